//! A steady, paced Produce load generator: bench/perf.py's latency rows run it against
//! librdkafka's in-memory mock broker and against fastlog, so that what the client sees can be
//! set beside what the generator itself adds.
//!
//!     cargo build --release --no-default-features --example loadgen
//!     target/release/examples/loadgen --bootstrap 127.0.0.1:9092 --topic t --partitions 6 \
//!         --rate 10000 --seconds 5 [--size 100] [--in-flight 5] [--acks 1] [--cpu 1]
//!
//! One thread, one connection. Record i is due at i/rate seconds after the start (an open-loop
//! schedule): when an in-flight slot is free, the records due and not yet sent (up to 8,000, and
//! under 900 KB) go out in one Produce request, to the next partition in turn (librdkafka with
//! linger.ms=0 and max.in.flight=5 does the same). A record's latency runs from the moment it
//! was due to the moment its response was read, so a late generator shows up in its own figures
//! instead of hiding. Waits use ppoll with a 1 ns timer slack; `--cpu N` pins the thread.
//!
//! Prints one JSON line: records sent, acked and refused, requests, the latency percentiles (ms,
//! null when no record was acked) and the send lag: from a request's oldest record being due to
//! the request written to the socket, which includes any wait for a free in-flight slot (the
//! broker's back-pressure) as well as the generator's own delay. Exits 1 when a record is
//! refused or the broker hangs up, 2 on bad arguments.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use _core::batch::build_batch;
use _core::wire::generated::{produce_request, produce_response, request_header, response_header};
use _core::wire::{Reader, Writer};

const PRODUCE: i16 = 0;
/// Records in one request at most, and its records' bytes at most (the broker's default
/// message.max.bytes is 1,048,588), counting a record's own overhead generously.
const MAX_RECORDS_PER_REQUEST: u64 = 8_000;
const MAX_REQUEST_BYTES: u64 = 900_000;
const RECORD_OVERHEAD: u64 = 16;
/// How long the broker may take to answer the last request after the schedule ends.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

struct Args {
    bootstrap: String,
    topic: String,
    partitions: i32,
    rate: f64,
    seconds: f64,
    size: usize,
    in_flight: usize,
    acks: i16,
    version: i16,
    cpu: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        bootstrap: String::new(),
        topic: String::new(),
        partitions: 1,
        rate: 1000.0,
        seconds: 5.0,
        size: 100,
        in_flight: 5,
        acks: 1,
        version: 7,
        cpu: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--bootstrap" => args.bootstrap = value,
            "--topic" => args.topic = value,
            "--partitions" => args.partitions = value.parse().map_err(|e| bad(&e))?,
            "--rate" => args.rate = value.parse().map_err(|e| bad(&e))?,
            "--seconds" => args.seconds = value.parse().map_err(|e| bad(&e))?,
            "--size" => args.size = value.parse().map_err(|e| bad(&e))?,
            "--in-flight" => args.in_flight = value.parse().map_err(|e| bad(&e))?,
            "--acks" => args.acks = value.parse().map_err(|e| bad(&e))?,
            "--version" => args.version = value.parse().map_err(|e| bad(&e))?,
            "--cpu" => args.cpu = Some(value.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if args.bootstrap.is_empty() || args.topic.is_empty() {
        return Err("--bootstrap and --topic are required".into());
    }
    if !(args.rate > 0.0 && args.seconds > 0.0 && args.partitions > 0 && args.in_flight > 0) {
        return Err("--rate, --seconds, --partitions and --in-flight must be positive".into());
    }
    if args.cpu.is_some_and(|cpu| cpu >= libc::CPU_SETSIZE as usize) {
        return Err(format!("--cpu must be below {}", libc::CPU_SETSIZE));
    }
    if !(3..=produce_request::MAX_VERSION).contains(&args.version) {
        return Err(format!("--version must be 3 to {}", produce_request::MAX_VERSION));
    }
    Ok(args)
}

/// A request on the wire whose response has not been read yet: records first..first+count.
struct InFlight {
    correlation_id: i32,
    first: u64,
    count: u64,
}

struct Figures {
    acked: u64,
    refused: u64,
    requests: u64,
    /// Per acked record: due → response read, in nanoseconds.
    latencies: Vec<u64>,
    /// Per request: its oldest record's due time → the request written, in nanoseconds.
    send_lags: Vec<u64>,
    first_error: Option<String>,
}

/// The generator's connection: bytes still to write, bytes read and not yet a whole frame.
struct Connection {
    stream: TcpStream,
    unsent: Vec<u8>,
    written: usize,
    received: Vec<u8>,
}

impl Connection {
    fn flush_some(&mut self) -> std::io::Result<()> {
        while self.written < self.unsent.len() {
            match self.stream.write(&self.unsent[self.written..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        self.unsent.clear();
        self.written = 0;
        Ok(())
    }

    fn read_some(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 65536];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "the broker closed the connection")),
                Ok(n) => self.received.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// The next whole response frame (without its size), if one has arrived.
    fn next_frame(&mut self) -> Option<Vec<u8>> {
        if self.received.len() < 4 {
            return None;
        }
        let size = i32::from_be_bytes(self.received[..4].try_into().unwrap()).max(0) as usize;
        if self.received.len() < 4 + size {
            return None;
        }
        let frame = self.received[4..4 + size].to_vec();
        self.received.drain(..4 + size);
        Some(frame)
    }
}

fn produce_frame(args: &Args, correlation_id: i32, partition: i32, batch: &[u8]) -> Vec<u8> {
    let flexible = args.version >= produce_request::FLEXIBLE_FROM;
    let mut w = Writer::with_capacity(batch.len() + 128);
    w.i32(0); // the frame's size, below
    let header = request_header::RequestHeader {
        request_api_key: PRODUCE,
        request_api_version: args.version,
        correlation_id,
        client_id: Some("fastlog-loadgen"),
    };
    let request = produce_request::ProduceRequest {
        transactional_id: None,
        acks: args.acks,
        timeout_ms: 30_000,
        topic_data: vec![produce_request::TopicProduceData {
            name: &args.topic,
            partition_data: vec![produce_request::PartitionProduceData { index: partition, records: Some(batch) }],
        }],
    };
    header.write(&mut w, if flexible { 2 } else { 1 }).expect("header v1/v2 holds every field");
    request.write(&mut w, args.version).expect("produce v3+ holds every field");
    let size = (w.buf.len() - 4) as i32;
    w.buf[..4].copy_from_slice(&size.to_be_bytes());
    w.buf
}

/// The error codes of one Produce response (0 where the partition took the batch).
fn response_errors(frame: &[u8], version: i16) -> Result<(i32, Vec<i16>), String> {
    let flexible = version >= produce_response::FLEXIBLE_FROM;
    let mut r = Reader::new(frame);
    let header = response_header::ResponseHeader::read(&mut r, if flexible { 1 } else { 0 }).map_err(|e| e.to_string())?;
    let response = produce_response::ProduceResponse::read(&mut r, version).map_err(|e| e.to_string())?;
    let codes = response.responses.iter().flat_map(|t| t.partition_responses.iter().map(|p| p.error_code)).collect();
    Ok((header.correlation_id, codes))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn pin_and_sharpen_timers(cpu: Option<usize>) {
    // SAFETY: plain syscalls on this thread with valid arguments.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
        if let Some(cpu) = cpu {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                eprintln!("loadgen: cannot pin to cpu {cpu}: {}", std::io::Error::last_os_error());
            }
        }
    }
}

/// Waits until the socket can be read (or written, while bytes wait) or `until` passes.
fn wait(connection: &Connection, until: Option<Duration>) -> std::io::Result<()> {
    let mut events = libc::POLLIN;
    if !connection.unsent.is_empty() {
        events |= libc::POLLOUT;
    }
    let mut fd = libc::pollfd { fd: connection.stream.as_raw_fd(), events, revents: 0 };
    let timeout = until.map(|d| libc::timespec { tv_sec: d.as_secs() as libc::time_t, tv_nsec: d.subsec_nanos() as libc::c_long });
    let timeout_ptr = timeout.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: one valid pollfd, a valid or null timespec, no signal mask change.
    let n = unsafe { libc::ppoll(&mut fd, 1, timeout_ptr, std::ptr::null()) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// Reads what has arrived and settles each whole response: its records acked (with their
/// latencies) or refused.
fn read_responses(connection: &mut Connection, in_flight: &mut VecDeque<InFlight>, figures: &mut Figures, clock: &Clock, version: i16) -> std::io::Result<()> {
    connection.read_some()?;
    while let Some(frame) = connection.next_frame() {
        let answered = clock.start.elapsed();
        let request = in_flight
            .pop_front()
            .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidData, "a response to no request"))?;
        let (id, codes) = response_errors(&frame, version).map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))?;
        if id != request.correlation_id {
            let message = format!("response {id} where {} was due", request.correlation_id);
            return Err(std::io::Error::new(ErrorKind::InvalidData, message));
        }
        match codes.iter().find(|&&c| c != 0) {
            Some(&code) => {
                figures.refused += request.count;
                figures.first_error.get_or_insert(format!("partition error code {code}"));
            }
            None => {
                figures.acked += request.count;
                for i in request.first..request.first + request.count {
                    figures.latencies.push(answered.saturating_sub(clock.due_at(i)).as_nanos() as u64);
                }
            }
        }
    }
    Ok(())
}

/// The schedule: record i is due at i / rate after `start`.
struct Clock {
    start: Instant,
    interval_ns: f64,
    total: u64,
}

impl Clock {
    fn due_at(&self, i: u64) -> Duration {
        Duration::from_nanos((i as f64 * self.interval_ns) as u64)
    }

    /// How many records are due by now (all of them once the schedule has run out).
    fn due(&self, elapsed: Duration) -> u64 {
        self.total.min((elapsed.as_nanos() as f64 / self.interval_ns) as u64 + 1)
    }
}

fn run(args: &Args) -> std::io::Result<(Figures, Duration)> {
    let stream = TcpStream::connect(&args.bootstrap)?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    let mut connection = Connection { stream, unsent: Vec::new(), written: 0, received: Vec::new() };
    let total = (args.rate * args.seconds).round() as u64;
    // A catch-up request stays under the broker's default message.max.bytes (1 MB).
    let per_request = MAX_RECORDS_PER_REQUEST.min(MAX_REQUEST_BYTES / (args.size as u64 + RECORD_OVERHEAD)).max(1);
    let value = vec![b'x'; args.size];
    let values: Vec<&[u8]> = vec![&value[..]; per_request as usize];
    let mut figures = Figures {
        acked: 0,
        refused: 0,
        requests: 0,
        latencies: Vec::with_capacity(total as usize),
        send_lags: Vec::new(),
        first_error: None,
    };
    let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(args.in_flight);
    let mut sent: u64 = 0;
    let mut writing_from: Option<u64> = None; // first record of the request being written
    let mut correlation_id: i32 = 0;
    let clock = Clock { start: Instant::now(), interval_ns: 1e9 / args.rate, total };
    loop {
        // Responses first: their latencies are taken before time goes into building a request.
        read_responses(&mut connection, &mut in_flight, &mut figures, &clock, args.version)?;
        let due = clock.due(clock.start.elapsed());
        if sent < due && in_flight.len() < args.in_flight && connection.unsent.is_empty() {
            let count = (due - sent).min(per_request);
            let batch = build_batch(0, now_ms(), &values[..count as usize]);
            let partition = (figures.requests % args.partitions as u64) as i32;
            connection.unsent = produce_frame(args, correlation_id, partition, &batch);
            in_flight.push_back(InFlight { correlation_id, first: sent, count });
            writing_from = Some(sent);
            figures.requests += 1;
            correlation_id = correlation_id.wrapping_add(1);
            sent += count;
            if args.acks == 0 {
                in_flight.pop_back();
                figures.acked += count;
            }
        }
        connection.flush_some()?;
        if let (Some(first), true) = (writing_from, connection.unsent.is_empty()) {
            figures.send_lags.push(clock.start.elapsed().saturating_sub(clock.due_at(first)).as_nanos() as u64);
            writing_from = None;
        }
        if sent == total && in_flight.is_empty() && connection.unsent.is_empty() {
            return Ok((figures, clock.start.elapsed()));
        }
        let elapsed = clock.start.elapsed();
        if elapsed > clock.due_at(total) + DRAIN_TIMEOUT {
            return Err(std::io::Error::new(ErrorKind::TimedOut, format!("{} requests unanswered", in_flight.len())));
        }
        let due = clock.due(elapsed);
        let slot_free = in_flight.len() < args.in_flight && connection.unsent.is_empty();
        if sent < due && slot_free {
            continue;
        }
        // Sleep until the next record is due, unless records wait for a slot: then only a
        // response (or a writable socket) can move things on.
        let next_due = if sent < due || sent == total { None } else { Some(clock.due_at(due).saturating_sub(elapsed)) };
        wait(&connection, next_due.or(Some(Duration::from_millis(100))))?;
    }
}

/// The p-th percentile of nanoseconds, in ms as JSON: null when there is none.
fn percentile_ms(sorted: &[u64], p: f64) -> String {
    if sorted.is_empty() {
        return "null".into();
    }
    let at = ((p / 100.0 * sorted.len() as f64) as usize).min(sorted.len() - 1);
    format!("{:.4}", sorted[at] as f64 / 1e6)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("loadgen: {message}");
            return ExitCode::from(2);
        }
    };
    pin_and_sharpen_timers(args.cpu);
    let (mut figures, elapsed) = match run(&args) {
        Ok(done) => done,
        Err(e) => {
            eprintln!("loadgen: {}: {e}", args.bootstrap);
            return ExitCode::from(1);
        }
    };
    figures.latencies.sort_unstable();
    figures.send_lags.sort_unstable();
    let l = &figures.latencies;
    println!(
        "{{\"sent\": {}, \"acked\": {}, \"refused\": {}, \"requests\": {}, \"seconds\": {:.6}, \"p50_ms\": {}, \"p99_ms\": {}, \"p999_ms\": {}, \"max_ms\": {}, \"send_lag_p99_ms\": {}, \"error\": {}}}",
        figures.acked + figures.refused,
        figures.acked,
        figures.refused,
        figures.requests,
        elapsed.as_secs_f64(),
        percentile_ms(l, 50.0),
        percentile_ms(l, 99.0),
        percentile_ms(l, 99.9),
        percentile_ms(l, 100.0),
        percentile_ms(&figures.send_lags, 99.0),
        figures.first_error.as_ref().map_or("null".to_string(), |e| format!("\"{e}\"")),
    );
    if figures.refused > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
