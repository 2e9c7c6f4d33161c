//! The metadata quorum of a cluster: consensus comes from TiKV's raft-rs (an I/O-free state
//! machine); this module owns what raft-rs leaves to its user: the durable log of entries and
//! hard states (`quorum.wal` in the metadata directory), and each `Ready` turned into what the
//! Python layer must do next: messages to send to peers and committed entries to apply.
//!
//! The write-ahead file holds records `length u32 | crc32c u32 | kind u8 | protobuf bytes`
//! (kind 1: a log entry, 2: a hard state). Replayed at open into raft-rs's `MemStorage`; an
//! entry whose index is not past the last one replaces the tail from there, as raft does when
//! a new leader overwrites uncommitted entries. A torn record at the end (a crash mid-write) is
//! cut off. Voters are fixed by configuration (no membership changes yet) and there are no
//! snapshots yet: a restart re-applies every committed entry.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, EntryType, HardState, Message};
use raft::storage::MemStorage;
use raft::{Config, RawNode, StateRole};

use crate::error::{CoreError, Result};

const WAL_FILE: &str = "quorum.wal";
const KIND_ENTRY: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const RECORD_HEAD: usize = 9;

/// Ticks (of the caller's clock) before a follower without a leader starts an election, and
/// between a leader's heartbeats.
pub const ELECTION_TICKS: usize = 10;
pub const HEARTBEAT_TICKS: usize = 2;

fn raft_error(context: &str, e: raft::Error) -> CoreError {
    CoreError::InvalidArgument(format!("{context}: {e}"))
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> CoreError {
    CoreError::io(format!("{what} {}", path.display()), e)
}

/// What one `Quorum::ready` asks of the caller.
#[derive(Debug, Default)]
pub struct Output {
    /// (peer id, encoded raft message) to send; a message that is lost is resent by raft.
    pub messages: Vec<(u64, Vec<u8>)>,
    /// Data of newly committed entries, in log order, to apply to the metadata state machine.
    pub committed: Vec<(u64, Vec<u8>)>,
}

/// The append-only file behind the raft log.
struct Wal {
    path: PathBuf,
    file: File,
    unsynced: bool,
}

impl Wal {
    /// Opens (or creates) the file and replays it into `storage`; returns the open file.
    fn open(dir: &Path, storage: &MemStorage) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, "create", e))?;
        let path = dir.join(WAL_FILE);
        let mut bytes = Vec::new();
        if path.exists() {
            File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| io_error(&path, "read", e))?;
        }
        let good = replay(&bytes, storage)?;
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io_error(&path, "open", e))?;
        if good < bytes.len() {
            file.set_len(good as u64).map_err(|e| io_error(&path, "truncate", e))?;
        }
        Ok(Wal { path, file, unsynced: false })
    }

    fn append(&mut self, kind: u8, payload: &[u8]) -> Result<()> {
        let mut record = Vec::with_capacity(RECORD_HEAD + payload.len());
        record.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        let mut covered = vec![kind];
        covered.extend_from_slice(payload);
        record.extend_from_slice(&crc32c::crc32c(&covered).to_be_bytes());
        record.extend_from_slice(&covered);
        self.file.write_all(&record).map_err(|e| io_error(&self.path, "write", e))?;
        self.unsynced = true;
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        if self.unsynced {
            self.file.sync_data().map_err(|e| io_error(&self.path, "fsync", e))?;
            self.unsynced = false;
        }
        Ok(())
    }
}

/// Replays records into `storage`; returns the length of the intact prefix. Only the last
/// record may be bad (a write torn by a crash); a bad record with others after it means the file
/// was damaged, and votes already given could be lost by cutting there: that is an error.
fn replay(bytes: &[u8], storage: &MemStorage) -> Result<usize> {
    let mut pos = 0;
    while bytes.len() - pos >= RECORD_HEAD {
        let length = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let crc = u32::from_be_bytes(bytes[pos + 4..pos + 8].try_into().unwrap());
        let Some(covered) = bytes.get(pos + 8..pos + 8 + 1 + length) else { break };
        if crc32c::crc32c(covered) != crc {
            if pos + 8 + 1 + length < bytes.len() {
                return Err(CoreError::CorruptBatch(format!(
                    "quorum log record at byte {pos} fails its CRC and {} bytes follow it: the file is damaged, not torn",
                    bytes.len() - pos - 9 - length
                )));
            }
            break;
        }
        let (kind, payload) = (covered[0], &covered[1..]);
        let bad = |what: &str| CoreError::CorruptBatch(format!("quorum log record at byte {pos}: bad {what}"));
        match kind {
            KIND_ENTRY => {
                let entry = Entry::parse_from_bytes(payload).map_err(|_| bad("entry"))?;
                storage.wl().append(&[entry]).map_err(|e| raft_error("replaying the quorum log", e))?;
            }
            KIND_HARD_STATE => {
                let state = HardState::parse_from_bytes(payload).map_err(|_| bad("hard state"))?;
                storage.wl().set_hardstate(state);
            }
            _ => return Err(bad("kind")),
        }
        pos += 8 + 1 + length;
    }
    Ok(pos)
}

/// One node of the metadata quorum.
pub struct Quorum {
    node: RawNode<MemStorage>,
    wal: Wal,
}

impl Quorum {
    /// Opens node `id` of the quorum of `voters`, its log kept in `dir`.
    pub fn open(id: u64, voters: &[u64], dir: &Path) -> Result<Self> {
        if !voters.contains(&id) {
            return Err(CoreError::InvalidArgument(format!("node {id} is not one of the voters {voters:?}")));
        }
        let storage = MemStorage::new();
        let wal = Wal::open(dir, &storage)?;
        storage.wl().set_conf_state(ConfState::from((voters.to_vec(), vec![])));
        let config = Config {
            id,
            election_tick: ELECTION_TICKS,
            heartbeat_tick: HEARTBEAT_TICKS,
            pre_vote: true,
            check_quorum: true,
            ..Default::default()
        };
        config.validate().map_err(|e| raft_error("quorum config", e))?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let node = RawNode::new(&config, storage, &logger).map_err(|e| raft_error("starting the quorum", e))?;
        Ok(Quorum { node, wal })
    }

    pub fn tick(&mut self) {
        self.node.tick();
    }

    /// Hands a peer's encoded raft message to the state machine.
    pub fn step(&mut self, message: &[u8]) -> Result<()> {
        let message = Message::parse_from_bytes(message)
            .map_err(|e| CoreError::InvalidArgument(format!("undecodable quorum message: {e}")))?;
        match self.node.step(message) {
            Ok(()) | Err(raft::Error::StepPeerNotFound) | Err(raft::Error::StepLocalMsg) => Ok(()),
            Err(e) => Err(raft_error("quorum message", e)),
        }
    }

    /// Appends `data` to the log; only the leader takes proposals.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<()> {
        if !self.is_leader() {
            return Err(CoreError::InvalidArgument(format!("node {} is not the quorum leader", self.id())));
        }
        self.node.propose(vec![], data).map_err(|e| raft_error("proposal", e))
    }

    pub fn id(&self) -> u64 {
        self.node.raft.id
    }

    /// The leader's id, 0 while none is known.
    pub fn leader_id(&self) -> u64 {
        self.node.raft.leader_id
    }

    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// On the leader: the voters it heard from within the last election timeout (itself
    /// included). Elsewhere: empty.
    pub fn active_voters(&self) -> Vec<u64> {
        if !self.is_leader() {
            return vec![];
        }
        let mut active: Vec<u64> =
            self.node.raft.prs().iter().filter(|(id, p)| **id == self.id() || p.recent_active).map(|(id, _)| *id).collect();
        active.sort_unstable();
        active
    }

    /// The index up to which the log is committed (the quorum's high watermark).
    pub fn commit_index(&self) -> u64 {
        self.node.raft.raft_log.committed
    }

    /// (voter, last log index known to be on it): the leader knows every voter's; elsewhere
    /// only this node's own is known (others are reported as 0).
    pub fn voter_progress(&self) -> Vec<(u64, u64)> {
        let own = self.node.raft.raft_log.last_index();
        let mut out: Vec<(u64, u64)> = if self.is_leader() {
            self.node.raft.prs().iter().map(|(id, p)| (*id, if *id == self.id() { own } else { p.matched })).collect()
        } else {
            self.node.raft.prs().conf().voters().ids().iter().map(|id| (id, if id == self.id() { own } else { 0 })).collect()
        };
        out.sort_unstable();
        out
    }

    /// Persists what raft asks to persist (fsynced before any message that depends on it goes
    /// out) and returns the messages to send and the entries committed since the last call.
    pub fn ready(&mut self) -> Result<Output> {
        let mut out = Output::default();
        if !self.node.has_ready() {
            return Ok(out);
        }
        let mut ready = self.node.ready();
        add_messages(&mut out, ready.take_messages());
        add_committed(&mut out, ready.take_committed_entries());
        if !ready.entries().is_empty() {
            for entry in ready.entries() {
                self.wal.append(KIND_ENTRY, &entry.write_to_bytes().map_err(encode_error)?)?;
            }
            self.node.store().wl().append(ready.entries()).map_err(|e| raft_error("storing entries", e))?;
        }
        if let Some(state) = ready.hs() {
            self.wal.append(KIND_HARD_STATE, &state.write_to_bytes().map_err(encode_error)?)?;
            self.node.store().wl().set_hardstate(state.clone());
        }
        self.wal.sync()?;
        add_messages(&mut out, ready.take_persisted_messages());
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            // raft-rs carries this commit in no later hard state: written here (synced with
            // the next record), so a restart re-applies all of it without waiting for a leader.
            let mut state = self.node.store().rl().hard_state().clone();
            state.set_commit(commit);
            self.wal.append(KIND_HARD_STATE, &state.write_to_bytes().map_err(encode_error)?)?;
            self.node.store().wl().set_hardstate(state);
        }
        add_messages(&mut out, light.take_messages());
        add_committed(&mut out, light.take_committed_entries());
        self.node.advance_apply();
        Ok(out)
    }
}

fn encode_error(e: protobuf::ProtobufError) -> CoreError {
    CoreError::InvalidArgument(format!("encoding a quorum record: {e}"))
}

fn add_messages(out: &mut Output, messages: Vec<Message>) {
    for message in messages {
        if let Ok(bytes) = message.write_to_bytes() {
            out.messages.push((message.to, bytes));
        }
    }
}

fn add_committed(out: &mut Output, entries: Vec<Entry>) {
    for entry in entries {
        // Empty normal entries are the ones a new leader appends; configuration entries do not
        // occur (the voters are fixed).
        if entry.get_entry_type() == EntryType::EntryNormal && !entry.data.is_empty() {
            out.committed.push((entry.index, entry.data.to_vec()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Three quorums passing messages through a queue, each `ready` after every step.
    struct Cluster {
        nodes: Vec<Option<Quorum>>,
        applied: Vec<Vec<Vec<u8>>>,
        queue: VecDeque<(u64, Vec<u8>)>,
        dirs: Vec<tempfile::TempDir>,
    }

    impl Cluster {
        fn new() -> Self {
            let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
            let nodes = (1..=3).map(|id| Some(Quorum::open(id, &[1, 2, 3], dirs[id as usize - 1].path()).unwrap())).collect();
            Cluster { nodes, applied: vec![vec![]; 3], queue: VecDeque::new(), dirs }
        }

        fn collect(&mut self, index: usize) {
            if let Some(node) = self.nodes[index].as_mut() {
                let out = node.ready().unwrap();
                self.queue.extend(out.messages);
                self.applied[index].extend(out.committed.into_iter().map(|(_, data)| data));
            }
        }

        fn run(&mut self, ticks: usize) {
            for _ in 0..ticks {
                for i in 0..3 {
                    if let Some(node) = self.nodes[i].as_mut() {
                        node.tick();
                    }
                    self.collect(i);
                }
                while let Some((to, message)) = self.queue.pop_front() {
                    let i = to as usize - 1;
                    if let Some(node) = self.nodes[i].as_mut() {
                        node.step(&message).unwrap();
                    }
                    self.collect(i);
                }
            }
        }

        fn leader(&self) -> Option<usize> {
            (0..3).find(|i| self.nodes[*i].as_ref().is_some_and(|n| n.is_leader()))
        }
    }

    #[test]
    fn three_nodes_elect_a_leader_and_every_node_applies_proposals_in_order() {
        let mut cluster = Cluster::new();
        cluster.run(40);
        let leader = cluster.leader().expect("a leader within 40 ticks");
        for i in 0..3 {
            assert_eq!(cluster.nodes[i].as_ref().unwrap().leader_id(), leader as u64 + 1);
        }
        for n in 0..5u8 {
            cluster.nodes[leader].as_mut().unwrap().propose(vec![n]).unwrap();
        }
        cluster.run(5);
        for applied in &cluster.applied {
            assert_eq!(applied, &(0..5u8).map(|n| vec![n]).collect::<Vec<_>>());
        }
        let follower = (leader + 1) % 3;
        assert!(cluster.nodes[follower].as_mut().unwrap().propose(vec![9]).is_err());
        assert_eq!(cluster.nodes[leader].as_ref().unwrap().active_voters(), vec![1, 2, 3]);
        let leader_node = cluster.nodes[leader].as_ref().unwrap();
        let last = leader_node.commit_index();
        assert!(last >= 5, "five proposals and the leader's empty entry are committed");
        assert_eq!(leader_node.voter_progress(), vec![(1, last), (2, last), (3, last)]);
    }

    #[test]
    fn a_new_leader_takes_over_and_a_restarted_node_replays_what_was_committed() {
        let mut cluster = Cluster::new();
        cluster.run(40);
        let first = cluster.leader().unwrap();
        cluster.nodes[first].as_mut().unwrap().propose(b"before".to_vec()).unwrap();
        cluster.run(5);
        cluster.nodes[first] = None; // killed
        cluster.run(60);
        let second = cluster.leader().expect("a new leader");
        assert_ne!(second, first);
        cluster.nodes[second].as_mut().unwrap().propose(b"after".to_vec()).unwrap();
        cluster.run(5);
        let dir = cluster.dirs[first].path().to_path_buf();
        cluster.nodes[first] = Some(Quorum::open(first as u64 + 1, &[1, 2, 3], &dir).unwrap());
        cluster.applied[first].clear();
        cluster.run(30);
        assert_eq!(cluster.applied[first], vec![b"before".to_vec(), b"after".to_vec()]);
        assert_eq!(cluster.leader(), Some(second), "the returning node follows the current leader");
    }

    #[test]
    fn a_damaged_record_before_the_end_is_an_error_not_a_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut node = Quorum::open(1, &[1], dir.path()).unwrap();
            for _ in 0..30 {
                node.tick();
                node.ready().unwrap();
            }
            node.propose(b"one".to_vec()).unwrap();
            node.ready().unwrap();
        }
        let path = dir.path().join(WAL_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[RECORD_HEAD + 1] ^= 0xff; // inside the first record
        std::fs::write(&path, &bytes).unwrap();
        let err = Quorum::open(1, &[1], dir.path()).err().expect("refused");
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn a_torn_record_at_the_end_of_the_log_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut node = Quorum::open(1, &[1], dir.path()).unwrap();
            for _ in 0..30 {
                node.tick();
                node.ready().unwrap();
            }
            assert!(node.is_leader(), "a quorum of one elects itself");
            node.propose(b"kept".to_vec()).unwrap();
            node.ready().unwrap();
        }
        let path = dir.path().join(WAL_FILE);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[0, 0, 0, 40, 1, 2]).unwrap();
        drop(file);
        let mut node = Quorum::open(1, &[1], dir.path()).unwrap();
        let mut applied = vec![];
        for _ in 0..30 {
            node.tick();
            applied.extend(node.ready().unwrap().committed.into_iter().map(|(_, d)| d));
        }
        assert_eq!(applied, vec![b"kept".to_vec()]);
        assert!(!std::fs::read(&path).unwrap().ends_with(&[0, 0, 0, 40, 1, 2]));
    }
}
