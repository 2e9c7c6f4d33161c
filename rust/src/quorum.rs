//! The metadata quorum of a cluster: consensus comes from TiKV's raft-rs (an I/O-free state
//! machine); this module owns what raft-rs leaves to its user: the durable log of entries and
//! hard states (`quorum.wal` in the metadata directory), and each `Ready` turned into what the
//! Python layer must do next: messages to send to peers and committed entries to apply.
//!
//! The write-ahead file holds records `length u32 | crc32c u32 | kind u8 | protobuf bytes`
//! (kind 1: a log entry, 2: a hard state). Replayed at open into raft-rs's `MemStorage`; an
//! entry whose index is not past the last one replaces the tail from there, as raft does when
//! a new leader overwrites uncommitted entries. A torn record at the end (a crash mid-write) is
//! cut off. Voters are fixed by configuration (no membership changes yet).
//!
//! Snapshots: the caller hands `compact` its whole state as of an applied index; it is written
//! to `quorum.snapshot` (one record of kind 3: raft's `Snapshot`, metadata and data), the
//! entries up to that index leave the log, and the write-ahead file is rewritten with what
//! remains. A restart loads the snapshot (`snapshot()` gives it to the caller) and replays only
//! the entries after it; a follower too far behind gets the snapshot from the leader, and the
//! next `ready` hands it over (`Output::snapshot`) to replace the caller's state.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, EntryType, HardState, Message, Snapshot};
use raft::storage::{MemStorage, RaftState, Storage};
use raft::{Config, GetEntriesContext, RawNode, StateRole};

use crate::error::{CoreError, Result};

const WAL_FILE: &str = "quorum.wal";
const SNAPSHOT_FILE: &str = "quorum.snapshot";
const KIND_ENTRY: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_SNAPSHOT: u8 = 3;
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
    /// A snapshot from the leader (index, data): the state to replace the caller's with,
    /// before `committed` is applied.
    pub snapshot: Option<(u64, Vec<u8>)>,
}

/// raft-rs's `MemStorage`, whose snapshots carry the caller's data (MemStorage's carry none).
#[derive(Clone, Default)]
struct QuorumStorage {
    mem: MemStorage,
    snapshot: Arc<RwLock<Snapshot>>,
}

impl Storage for QuorumStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(&self, low: u64, high: u64, max_size: impl Into<Option<u64>>, context: GetEntriesContext) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let snapshot = self.snapshot.read().unwrap_or_else(|p| p.into_inner());
        if snapshot.get_metadata().index == 0 || snapshot.get_metadata().index < request_index {
            return Err(raft::Error::Store(raft::StorageError::SnapshotTemporarilyUnavailable));
        }
        Ok(snapshot.clone())
    }
}

impl QuorumStorage {
    /// Makes `snapshot` the start of the log, keeping the entries after it (and the hard state).
    fn install(&self, snapshot: &Snapshot) -> Result<()> {
        let index = snapshot.get_metadata().index;
        let last = self.mem.last_index().map_err(|e| raft_error("quorum log", e))?;
        let first = self.mem.first_index().map_err(|e| raft_error("quorum log", e))?;
        let keep = if index < last && index + 1 >= first {
            self.mem.entries(index + 1, last + 1, None, GetEntriesContext::empty(false)).map_err(|e| raft_error("quorum log", e))?
        } else {
            Vec::new()
        };
        let hard_state = self.mem.rl().hard_state().clone();
        if first > index {
            return Err(CoreError::InvalidArgument(format!("snapshot at {index} is older than the log's start {first}")));
        }
        self.mem.wl().apply_snapshot(snapshot.clone()).map_err(|e| raft_error("installing a snapshot", e))?;
        self.mem.wl().append(&keep).map_err(|e| raft_error("installing a snapshot", e))?;
        let mut state = hard_state;
        state.commit = state.commit.max(index);
        state.term = state.term.max(snapshot.get_metadata().term);
        self.mem.wl().set_hardstate(state);
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = snapshot.clone();
        Ok(())
    }
}

/// The append-only file behind the raft log.
struct Wal {
    path: PathBuf,
    file: File,
    unsynced: bool,
}

impl Wal {
    /// Opens (or creates) the file and replays it into `storage` (the entries after the
    /// snapshot's index `after`); returns the open file.
    fn open(dir: &Path, storage: &MemStorage, after: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, "create", e))?;
        let path = dir.join(WAL_FILE);
        let mut bytes = Vec::new();
        if path.exists() {
            File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| io_error(&path, "read", e))?;
        }
        let good = replay(&bytes, storage, after)?;
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io_error(&path, "open", e))?;
        if good < bytes.len() {
            file.set_len(good as u64).map_err(|e| io_error(&path, "truncate", e))?;
        }
        Ok(Wal { path, file, unsynced: false })
    }

    fn append(&mut self, kind: u8, payload: &[u8]) -> Result<()> {
        self.file.write_all(&framed(kind, payload)).map_err(|e| io_error(&self.path, "write", e))?;
        self.unsynced = true;
        Ok(())
    }

    /// Replaces the file with `hard_state` and `entries` (what is left after a snapshot),
    /// written aside, fsynced and renamed over it.
    fn rewrite(&mut self, hard_state: &HardState, entries: &[Entry]) -> Result<()> {
        let mut bytes = framed(KIND_HARD_STATE, &hard_state.write_to_bytes().map_err(encode_error)?);
        for entry in entries {
            bytes.extend(framed(KIND_ENTRY, &entry.write_to_bytes().map_err(encode_error)?));
        }
        write_atomically(&self.path, &bytes)?;
        self.file = OpenOptions::new().append(true).open(&self.path).map_err(|e| io_error(&self.path, "open", e))?;
        self.unsynced = false;
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

/// `length u32 | crc32c u32 | kind u8 | payload`, the CRC over kind and payload.
fn framed(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(RECORD_HEAD + payload.len());
    record.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    let mut covered = vec![kind];
    covered.extend_from_slice(payload);
    record.extend_from_slice(&crc32c::crc32c(&covered).to_be_bytes());
    record.extend_from_slice(&covered);
    record
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(|e| io_error(&tmp, "create", e))?;
    file.write_all(bytes).and_then(|_| file.sync_all()).map_err(|e| io_error(&tmp, "write", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, "rename", e))?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error(dir, "fsync", e))?;
    }
    Ok(())
}

/// The snapshot in `dir`, if one was written (a damaged one is an error: the entries it
/// replaced are gone from the log).
fn read_snapshot(dir: &Path) -> Result<Option<Snapshot>> {
    let path = dir.join(SNAPSHOT_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&path).map_err(|e| io_error(&path, "read", e))?;
    let bad = || CoreError::CorruptBatch(format!("{} is damaged", path.display()));
    if bytes.len() < RECORD_HEAD {
        return Err(bad());
    }
    let length = u32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_be_bytes(bytes[4..8].try_into().unwrap());
    let covered = bytes.get(8..8 + 1 + length).ok_or_else(bad)?;
    if crc32c::crc32c(covered) != crc || covered[0] != KIND_SNAPSHOT {
        return Err(bad());
    }
    Snapshot::parse_from_bytes(&covered[1..]).map(Some).map_err(|_| bad())
}

/// Replays records into `storage`; returns the length of the intact prefix. Only the last
/// record may be bad (a write torn by a crash); a bad record with others after it means the file
/// was damaged, and votes already given could be lost by cutting there: that is an error.
fn replay(bytes: &[u8], storage: &MemStorage, after: u64) -> Result<usize> {
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
                let last = storage.last_index().map_err(|e| raft_error("replaying the quorum log", e))?;
                if entry.index > last + 1 {
                    return Err(bad("entry index (a gap in the log)"));
                }
                if entry.index > after {  // those up to the snapshot are in it
                    storage.wl().append(&[entry]).map_err(|e| raft_error("replaying the quorum log", e))?;
                }
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
    node: RawNode<QuorumStorage>,
    wal: Wal,
    dir: PathBuf,
}

impl Quorum {
    /// Opens node `id` of the quorum of `voters`, its log kept in `dir`.
    pub fn open(id: u64, voters: &[u64], dir: &Path) -> Result<Self> {
        if !voters.contains(&id) {
            return Err(CoreError::InvalidArgument(format!("node {id} is not one of the voters {voters:?}")));
        }
        let storage = QuorumStorage::default();
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, "create", e))?;
        let snapshot = read_snapshot(dir)?;
        let after = snapshot.as_ref().map_or(0, |s| s.get_metadata().index);
        if let Some(snapshot) = &snapshot {
            storage.install(snapshot)?;
        }
        let wal = Wal::open(dir, &storage.mem, after)?;
        storage.mem.wl().set_conf_state(ConfState::from((voters.to_vec(), vec![])));
        let config = Config {
            id,
            election_tick: ELECTION_TICKS,
            heartbeat_tick: HEARTBEAT_TICKS,
            pre_vote: true,
            check_quorum: true,
            applied: after, // what the snapshot holds is applied already
            ..Default::default()
        };
        config.validate().map_err(|e| raft_error("quorum config", e))?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let node = RawNode::new(&config, storage, &logger).map_err(|e| raft_error("starting the quorum", e))?;
        Ok(Quorum { node, wal, dir: dir.to_path_buf() })
    }

    /// The snapshot the log starts from: (index, data), None if there is none.
    pub fn snapshot(&self) -> Option<(u64, Vec<u8>)> {
        let snapshot = self.node.store().snapshot.read().unwrap_or_else(|p| p.into_inner());
        let index = snapshot.get_metadata().index;
        (index > 0).then(|| (index, snapshot.data.to_vec()))
    }

    /// Takes `data`, the caller's whole state as of applied index `index`, as the start of the
    /// log: written to the snapshot file, the entries up to `index` dropped, the write-ahead
    /// file rewritten with the rest. An index not applied yet, or not past the last snapshot,
    /// is refused.
    pub fn compact(&mut self, index: u64, data: Vec<u8>) -> Result<()> {
        let applied = self.node.raft.raft_log.applied;
        let current = self.node.store().snapshot.read().unwrap_or_else(|p| p.into_inner()).get_metadata().index;
        if index > applied || index <= current {
            return Err(CoreError::InvalidArgument(format!("cannot snapshot at {index}: applied {applied}, last snapshot {current}")));
        }
        let store = self.node.store().clone();
        let term = store.term(index).map_err(|e| raft_error("snapshot", e))?;
        let mut snapshot = Snapshot::default();
        snapshot.data = data.into();
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(store.mem.initial_state().map_err(|e| raft_error("snapshot", e))?.conf_state);
        self.keep_snapshot(&snapshot)
    }

    /// Writes `snapshot` to the snapshot file, makes it the start of the log and rewrites the
    /// write-ahead file with what follows it.
    fn keep_snapshot(&mut self, snapshot: &Snapshot) -> Result<()> {
        write_atomically(&self.dir.join(SNAPSHOT_FILE), &framed(KIND_SNAPSHOT, &snapshot.write_to_bytes().map_err(encode_error)?))?;
        self.node.store().install(snapshot)?;
        self.rewrite_wal()
    }

    fn rewrite_wal(&mut self) -> Result<()> {
        let store = self.node.store().clone();
        let (first, last) = (store.first_index().unwrap_or(1), store.last_index().unwrap_or(0));
        let entries = if last >= first {
            store.mem.entries(first, last + 1, None, GetEntriesContext::empty(false)).map_err(|e| raft_error("quorum log", e))?
        } else {
            Vec::new()
        };
        let hard_state = store.mem.rl().hard_state().clone();
        self.wal.rewrite(&hard_state, &entries)
    }

    /// What observers (broker-only nodes) read: the committed entries after index `after`, up
    /// to about `max_bytes` (at least one): their (index, data), and the index read up to
    /// (entries without data, a new leader's, are skipped but counted). None when `after` lies
    /// before the log's start: the snapshot must be read first.
    pub fn committed_after(&self, after: u64, max_bytes: u64) -> Result<Option<(Vec<(u64, Vec<u8>)>, u64)>> {
        let raft_log = &self.node.raft.raft_log;
        if after + 1 < raft_log.first_index() {
            return Ok(None);
        }
        let committed = raft_log.committed;
        if after >= committed {
            return Ok(Some((Vec::new(), after)));
        }
        let entries = raft_log
            .slice(after + 1, committed + 1, max_bytes, GetEntriesContext::empty(false))
            .map_err(|e| raft_error("reading the committed log", e))?;
        let upto = entries.last().map_or(after, |e| e.index);
        let mut out = Output::default();
        add_committed(&mut out, entries);
        Ok(Some((out.committed, upto)))
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
        if !ready.snapshot().is_empty() {
            // The leader's state, for a node too far behind its log: kept, then handed over.
            let snapshot = ready.snapshot().clone();
            self.keep_snapshot(&snapshot)?;
            out.snapshot = Some((snapshot.get_metadata().index, snapshot.data.to_vec()));
        }
        add_committed(&mut out, ready.take_committed_entries());
        if !ready.entries().is_empty() {
            for entry in ready.entries() {
                self.wal.append(KIND_ENTRY, &entry.write_to_bytes().map_err(encode_error)?)?;
            }
            self.node.store().mem.wl().append(ready.entries()).map_err(|e| raft_error("storing entries", e))?;
        }
        if let Some(state) = ready.hs() {
            self.wal.append(KIND_HARD_STATE, &state.write_to_bytes().map_err(encode_error)?)?;
            self.node.store().mem.wl().set_hardstate(state.clone());
        }
        self.wal.sync()?;
        add_messages(&mut out, ready.take_persisted_messages());
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            // raft-rs carries this commit in no later hard state: written here (synced with
            // the next record), so a restart re-applies all of it without waiting for a leader.
            let mut state = self.node.store().mem.rl().hard_state().clone();
            state.set_commit(commit);
            self.wal.append(KIND_HARD_STATE, &state.write_to_bytes().map_err(encode_error)?)?;
            self.node.store().mem.wl().set_hardstate(state);
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
                if let Some((_, state)) = out.snapshot {
                    self.applied[index] = vec![state]; // the leader's state replaces this node's
                }
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

    fn applied_index(node: &Quorum) -> u64 {
        node.node.raft.raft_log.applied
    }

    #[test]
    fn a_snapshot_replaces_the_log_before_it_and_a_restart_starts_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let (index, wal_before) = {
            let mut node = Quorum::open(1, &[1], dir.path()).unwrap();
            for _ in 0..30 {
                node.tick();
                node.ready().unwrap();
            }
            for n in 0..50u8 {
                node.propose(vec![n; 100]).unwrap();
                node.ready().unwrap();
            }
            let index = applied_index(&node);
            let wal_before = std::fs::metadata(dir.path().join(WAL_FILE)).unwrap().len();
            assert!(node.compact(index + 1, b"x".to_vec()).is_err(), "not past what is applied");
            node.compact(index, b"state after 50".to_vec()).unwrap();
            assert!(node.compact(index, b"again".to_vec()).is_err(), "not twice at one index");
            node.propose(b"later".to_vec()).unwrap();
            node.ready().unwrap();
            (index, wal_before)
        };
        assert!(std::fs::metadata(dir.path().join(WAL_FILE)).unwrap().len() < wal_before / 10, "the log lost what the snapshot holds");
        let mut node = Quorum::open(1, &[1], dir.path()).unwrap();
        assert_eq!(node.snapshot(), Some((index, b"state after 50".to_vec())));
        let mut applied = vec![];
        for _ in 0..30 {
            node.tick();
            applied.extend(node.ready().unwrap().committed.into_iter().map(|(_, d)| d));
        }
        assert_eq!(applied, vec![b"later".to_vec()], "only what came after the snapshot is replayed");
    }

    #[test]
    fn a_node_behind_the_leaders_snapshot_gets_the_snapshot() {
        let mut cluster = Cluster::new();
        cluster.run(40);
        let leader = cluster.leader().unwrap();
        let behind = (leader + 1) % 3;
        cluster.nodes[behind] = None;
        for n in 0..10u8 {
            cluster.nodes[leader].as_mut().unwrap().propose(vec![n]).unwrap();
            cluster.run(1);
        }
        let node = cluster.nodes[leader].as_mut().unwrap();
        let index = applied_index(node);
        node.compact(index, b"the first ten".to_vec()).unwrap();
        cluster.nodes[leader].as_mut().unwrap().propose(b"eleventh".to_vec()).unwrap();
        cluster.run(3);
        let dir = cluster.dirs[behind].path().to_path_buf();
        cluster.nodes[behind] = Some(Quorum::open(behind as u64 + 1, &[1, 2, 3], &dir).unwrap());
        cluster.applied[behind].clear();
        cluster.run(30);
        assert_eq!(cluster.applied[behind], vec![b"the first ten".to_vec(), b"eleventh".to_vec()]);
        drop(cluster.nodes[behind].take());
        let reopened = Quorum::open(behind as u64 + 1, &[1, 2, 3], &dir).unwrap();
        assert_eq!(reopened.snapshot().map(|(i, _)| i), Some(index), "the snapshot it got is kept");
    }

    #[test]
    fn observers_read_committed_entries_and_are_sent_to_the_snapshot_once_compacted() {
        let mut cluster = Cluster::new();
        cluster.run(40);
        let leader = cluster.leader().expect("a leader");
        for n in 0..5u8 {
            cluster.nodes[leader].as_mut().unwrap().propose(vec![b'r', n]).unwrap();
            cluster.run(3);
        }
        let node = cluster.nodes[leader].as_ref().unwrap();
        let (all, upto) = node.committed_after(0, u64::MAX).unwrap().unwrap();
        assert_eq!(upto, node.commit_index());
        assert_eq!(all.iter().map(|(_, d)| d[1]).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        let (first, first_upto) = node.committed_after(0, 1).unwrap().unwrap();
        assert!(first_upto < upto, "max_bytes bounds one read");
        assert!(first.len() <= 1);
        let (none, same) = node.committed_after(upto, u64::MAX).unwrap().unwrap();
        assert!(none.is_empty() && same == upto);
        let third = all[2].0;
        let node = cluster.nodes[leader].as_mut().unwrap();
        node.compact(third, b"state".to_vec()).unwrap();
        assert!(node.committed_after(0, u64::MAX).unwrap().is_none());
        let (rest, _) = node.committed_after(third, u64::MAX).unwrap().unwrap();
        assert_eq!(rest.iter().map(|(_, d)| d[1]).collect::<Vec<_>>(), vec![3, 4]);
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
