//! Crash safety: a `bindery serve` child process takes a stream of upserts and deletes from
//! concurrent writers and is killed with SIGKILL at a random moment, over and over on the same
//! data folder. After each restart every acknowledged write is present and intact, every
//! acknowledged delete stays deleted, and every unacknowledged write is either wholly present or
//! wholly absent. A writer stops only when the server is gone; any other error fails the test.
//!
//! The same trial runs against the PostgreSQL store: bindery killed as above, and separately
//! PostgreSQL killed (every process of it) under the same writers, with bindery left running to
//! reconnect once it is back. Its CI form kills each a few times; `BINDERY_PG_CRASH_KILLS=20`
//! runs the full trial.
//!
//! Twenty restarts and three busy writers load the machine for a minute, and the writes counted
//! depend on the CPU they get: the tests hold `common::exclusive`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bindery::api::pb;
use bindery::api::pb::collections_client::CollectionsClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::common::postgres::Postgres;
use crate::common::{self, TempDir, repo};

const ROUNDS: usize = 20;
const WRITERS: usize = 3;
const DIM: usize = 32;
const COLLECTION: &str = "crash";

/// Small deterministic generator (xorshift64*), seeded per run and printed for reproduction.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The vector stored under `id`: derived from the id, so it can be checked after a restart.
fn vector_of(id: &str) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut rng = Rng(h | 1);
    (0..DIM).map(|_| (rng.below(2001) as f32 - 1000.0) / 997.0).collect()
}

/// A text item's text, derived from its id.
fn text_of(id: &str) -> String {
    format!("item {id} is a picture of a small boat")
}

/// One write as the client sent it.
#[derive(Debug, Clone)]
enum Write {
    /// Items by id; `true` for a text input, `false` for a raw vector.
    Upsert(Vec<(String, bool)>),
    Delete(Vec<String>),
}

#[derive(Default)]
struct Ledger {
    /// Writes acknowledged by the server, in order.
    acked: Vec<Write>,
    /// Writes sent whose reply has not come (yet, or ever: the kill interrupted them).
    pending: BTreeMap<u64, Write>,
    next: u64,
}

struct Server {
    child: Child,
    channel: Channel,
    client: CollectionsClient<Channel>,
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Starts `bindery serve` on `data`, or on the database `store` when given.
async fn start(data: &TempDir, store: Option<&str>) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bindery"));
    command.arg("serve");
    if let Some(url) = store {
        command.args(["--store", url]);
    }
    let mut child = command
        .arg("--models")
        .arg(repo().join("models"))
        .args(["--listen", "127.0.0.1:0", "--default-model", "imagebind-fixture", "--no-warm-up"])
        .args(["--intra-threads", "1", "--cpu-workers", "1"])
        // Small, so snapshots (and crashes during them) happen within the test.
        .args(["--wal-compact-bytes", "16384"])
        .arg("--data-dir")
        .arg(data.path())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "bindery=info,warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bindery serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let line = strip_ansi(&line);
            if !sent && line.contains("bindery serving") {
                let addr = line.split_whitespace().find_map(|w| w.strip_prefix("listen=")).map(String::from);
                let _ = tx.send(addr);
                sent = true;
            }
            if line.contains("panicked") {
                eprintln!("server: {line}");
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server announced its address")
        .expect("listen address in the log line");
    let channel =
        Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect");
    Server { child, client: CollectionsClient::new(channel.clone()), channel }
}

fn item(id: &str, text: bool) -> pb::Item {
    let source = if text {
        pb::item::Source::Input(pb::Input {
            id: String::new(),
            payload: Some(pb::input::Payload::Text(text_of(id))),
        })
    } else {
        pb::item::Source::Vector(pb::Vector { values: vector_of(id) })
    };
    pb::Item {
        id: id.into(),
        source: Some(source),
        metadata: [
            ("id".to_string(), id.to_string()),
            ("kind".to_string(), if text { "text" } else { "vector" }.into()),
        ]
        .into(),
        modality: 0,
    }
}

/// Whether `status` means the server went away (killed mid-call or before it) rather than that
/// it answered with an error.
fn server_gone(status: &Status) -> bool {
    // Statuses built on the client from a broken connection carry the transport error as their
    // source; statuses the server sent do not.
    matches!(status.code(), Code::Unavailable | Code::Unknown | Code::Cancelled)
        || std::error::Error::source(status).is_some()
}

/// Sends writes until the server dies, recording each as pending, then acknowledged. Any error
/// other than the server going away fails the test.
async fn writer(
    mut client: CollectionsClient<Channel>,
    round: usize,
    w: usize,
    seed: u64,
    ledger: Arc<Mutex<Ledger>>,
) {
    let mut rng = Rng(seed | 1);
    let mut mine: Vec<String> = Vec::new();
    for n in 0.. {
        let write = if !mine.is_empty() && rng.below(6) == 0 {
            let victim = mine.swap_remove(rng.below(mine.len() as u64) as usize);
            Write::Delete(vec![victim])
        } else {
            let batch = 1 + rng.below(4) as usize;
            let items: Vec<(String, bool)> =
                (0..batch).map(|b| (format!("r{round}-w{w}-{n}-{b}"), rng.below(5) == 0)).collect();
            Write::Upsert(items)
        };
        let slot = {
            let mut l = ledger.lock().unwrap();
            let slot = l.next;
            l.next += 1;
            l.pending.insert(slot, write.clone());
            slot
        };
        let reply = match &write {
            Write::Upsert(items) => {
                let req = pb::UpsertRequest {
                    collection: COLLECTION.into(),
                    items: items.iter().map(|(id, text)| item(id, *text)).collect(),
                };
                client.upsert(req).await.map(|_| ())
            }
            Write::Delete(ids) => {
                let req = pb::DeleteRequest { collection: COLLECTION.into(), ids: ids.clone() };
                client.delete(req).await.map(|r| {
                    let r = r.into_inner();
                    // The victim's upsert was acknowledged by this server and nothing else deletes it.
                    assert_eq!((r.deleted, r.missing_ids.len()), (1, 0), "delete {ids:?} removed nothing");
                })
            }
        };
        match reply {
            Ok(()) => {}
            Err(status) if server_gone(&status) => return, // this write stays pending
            Err(status) => panic!("round {round}, writer {w}: {write:?} failed: {status:?}"),
        }
        let mut l = ledger.lock().unwrap();
        let done = l.pending.remove(&slot).expect("pending write");
        if let Write::Upsert(items) = &done {
            mine.extend(items.iter().map(|(id, _)| id.clone()));
        }
        l.acked.push(done);
    }
}

/// The state the acknowledged writes imply: id -> is_text.
fn acked_state(ledger: &Ledger) -> BTreeMap<String, bool> {
    let mut state = BTreeMap::new();
    for w in &ledger.acked {
        match w {
            Write::Upsert(items) => state.extend(items.iter().cloned()),
            Write::Delete(ids) => ids.iter().for_each(|id| {
                state.remove(id);
            }),
        }
    }
    state
}

/// Ids whose last acknowledged write was a delete.
fn acked_deletes(ledger: &Ledger) -> BTreeSet<String> {
    let mut deleted = BTreeSet::new();
    for w in &ledger.acked {
        match w {
            Write::Upsert(items) => items.iter().for_each(|(id, _)| {
                deleted.remove(id);
            }),
            Write::Delete(ids) => deleted.extend(ids.iter().cloned()),
        }
    }
    deleted
}

/// Ids per Get call: within the server's default per-request limit.
const GET_CHUNK: usize = 200;

async fn fetch(client: &mut CollectionsClient<Channel>, ids: Vec<String>) -> HashMap<String, pb::StoredItem> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(GET_CHUNK) {
        let reply = client
            .get(pb::GetRequest { collection: COLLECTION.into(), ids: chunk.to_vec(), include_vectors: true })
            .await
            .expect("get")
            .into_inner();
        out.extend(reply.items.into_iter().map(|i| (i.id.clone(), i)));
    }
    out
}

fn intact(item: &pb::StoredItem, text: bool, text_vectors: &HashMap<String, Vec<f32>>) -> bool {
    let kind = if text { "text" } else { "vector" };
    let meta_ok = item.metadata.get("id") == Some(&item.id)
        && item.metadata.get("kind").map(String::as_str) == Some(kind)
        && item.metadata.len() == 2;
    let vector_ok = if text {
        text_vectors.get(&item.id).is_some_and(|v| *v == item.vector)
    } else {
        item.vector == vector_of(&item.id)
    };
    meta_ok && vector_ok
}

/// Checks the restarted server against the ledger and folds pending writes that did land into
/// the acknowledged history (they are now part of the collection's state).
async fn verify(server: &mut Server, ledger: &mut Ledger) {
    let mut embedder = pb::embedder_client::EmbedderClient::new(server.channel.clone());
    let expected = acked_state(ledger);
    // Acknowledged deletes stay deleted, unless an unacknowledged upsert may have re-added the id.
    let mut deleted = acked_deletes(ledger);
    for w in ledger.pending.values() {
        if let Write::Upsert(items) = w {
            items.iter().for_each(|(id, _)| {
                deleted.remove(id);
            });
        }
    }
    let deleted: Vec<String> = deleted.into_iter().collect();
    for chunk in deleted.chunks(GET_CHUNK) {
        let reply = server
            .client
            .get(pb::GetRequest {
                collection: COLLECTION.into(),
                ids: chunk.to_vec(),
                include_vectors: false,
            })
            .await
            .expect("get deleted ids")
            .into_inner();
        let back: Vec<&str> = reply.items.iter().map(|i| i.id.as_str()).collect();
        assert!(back.is_empty(), "acknowledged deletes came back: {back:?}");
        assert_eq!(reply.missing_ids, chunk, "every deleted id is reported missing");
    }
    let mut candidates: HashSet<String> = expected.keys().cloned().collect();
    for w in ledger.pending.values() {
        match w {
            Write::Upsert(items) => candidates.extend(items.iter().map(|(id, _)| id.clone())),
            Write::Delete(ids) => candidates.extend(ids.iter().cloned()),
        }
    }
    let found = fetch(&mut server.client, candidates.into_iter().collect()).await;
    // Reference vectors of the text items, embedded now by the same model.
    let texts: Vec<String> = found
        .values()
        .filter(|i| i.metadata.get("kind").map(String::as_str) == Some("text"))
        .map(|i| i.id.clone())
        .collect();
    let mut text_vectors = HashMap::new();
    for chunk in texts.chunks(64) {
        let inputs = chunk
            .iter()
            .map(|id| pb::Input { id: id.clone(), payload: Some(pb::input::Payload::Text(text_of(id))) })
            .collect();
        let reply = embedder
            .embed(pb::EmbedRequest { inputs, ..Default::default() })
            .await
            .expect("embed")
            .into_inner();
        text_vectors.extend(reply.embeddings.into_iter().map(|e| (e.id, e.vector)));
    }

    // Pending deletes may or may not have landed; pending upserts must be all or nothing.
    let mut state = expected.clone();
    let pending = std::mem::take(&mut ledger.pending);
    for w in pending.into_values() {
        match &w {
            Write::Upsert(items) => {
                let present = items.iter().filter(|(id, _)| found.contains_key(id)).count();
                assert!(
                    present == 0 || present == items.len(),
                    "an unacknowledged batch is half-present: {items:?}"
                );
                if present == items.len() {
                    state.extend(items.iter().cloned());
                    ledger.acked.push(w);
                }
            }
            Write::Delete(ids) => {
                if ids.iter().all(|id| !found.contains_key(id))
                    && ids.iter().all(|id| expected.contains_key(id))
                {
                    ids.iter().for_each(|id| {
                        state.remove(id);
                    });
                    ledger.acked.push(w);
                }
            }
        }
    }
    for (id, text) in &expected {
        if !state.contains_key(id) {
            continue; // removed by a pending delete that landed
        }
        let item = found.get(id).unwrap_or_else(|| panic!("acknowledged item {id} is missing"));
        assert!(intact(item, *text, &text_vectors), "acknowledged item {id} is damaged: {item:?}");
    }
    for (id, item) in &found {
        if !state.contains_key(id) {
            panic!("item {id} is present but was deleted (acknowledged delete) or never written: {item:?}");
        }
        assert!(intact(item, state[id], &text_vectors), "item {id} is damaged");
    }
    let stats = server
        .client
        .stats(pb::StatsRequest { collection: COLLECTION.into() })
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(stats.collection.map(|c| c.count), Some(state.len() as u64), "nothing else is present");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_at_random_moments() {
    let _exclusive = common::exclusive().await;
    let started = Instant::now();
    let data = TempDir::new("crash");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    eprintln!("crash test seed {seed:#x}");
    let mut rng = Rng(seed | 1);
    let mut ledger = Ledger::default();
    let (mut restarts_from_snapshot, mut replayed, mut torn_tails) = (0, 0, 0);
    let mut acked_total = 0;
    for round in 0..ROUNDS {
        let mut server = start(&data, None).await;
        let client = server.client.clone();
        if round == 0 {
            let create = pb::CreateCollectionRequest {
                name: COLLECTION.into(),
                metric: pb::Metric::Dot as i32,
                ..Default::default()
            };
            server.client.create_collection(create).await.expect("create");
        } else {
            verify(&mut server, &mut ledger).await;
        }
        let stats = server
            .client
            .stats(pb::StatsRequest { collection: COLLECTION.into() })
            .await
            .expect("stats")
            .into_inner();
        restarts_from_snapshot += usize::from(stats.snapshot_bytes > 0);
        replayed += stats.recovered_records;
        torn_tails += stats.corrupt_tails;

        let shared = Arc::new(Mutex::new(std::mem::take(&mut ledger)));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(writer(client.clone(), round, w, rng.next(), Arc::clone(&shared))))
            .collect();
        tokio::time::sleep(Duration::from_millis(30 + rng.below(350))).await;
        server.child.kill().expect("SIGKILL");
        server.child.wait().expect("reap");
        for t in tasks {
            t.await.expect("writer");
        }
        ledger = Arc::try_unwrap(shared).ok().expect("writers done").into_inner().unwrap();
        acked_total = ledger.acked.len();
    }
    // A last restart checks the final round.
    let mut server = start(&data, None).await;
    verify(&mut server, &mut ledger).await;
    server.child.kill().expect("kill");
    server.child.wait().expect("reap");
    eprintln!(
        "{ROUNDS} kills, {acked_total} acknowledged writes, {} live items; restarts from a snapshot: \
         {restarts_from_snapshot}, log records replayed: {replayed}, damaged tails cut: {torn_tails}; {:.1}s",
        acked_state(&ledger).len(),
        started.elapsed().as_secs_f64()
    );
    assert!(acked_total >= ROUNDS * 5, "too few writes to mean anything: {acked_total}");
    assert!(!acked_deletes(&ledger).is_empty(), "acknowledged deletes were checked");
    assert!(restarts_from_snapshot > 0 && replayed > 0, "both recovery paths ran");
}

/// Kills per process in the PostgreSQL trial: `BINDERY_PG_CRASH_KILLS`, or a few for CI.
fn pg_kills() -> usize {
    std::env::var("BINDERY_PG_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(5)
}

/// Runs the writers against `server` for a random moment, then `kill`s (bindery or PostgreSQL)
/// and returns the ledger once every writer has stopped.
async fn one_round(
    client: &CollectionsClient<Channel>,
    round: usize,
    rng: &mut Rng,
    ledger: Ledger,
    kill: impl FnOnce(),
) -> Ledger {
    let shared = Arc::new(Mutex::new(ledger));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(client.clone(), round, w, rng.next(), Arc::clone(&shared))))
        .collect();
    tokio::time::sleep(Duration::from_millis(30 + rng.below(350))).await;
    kill();
    for t in tasks {
        t.await.expect("writer");
    }
    Arc::try_unwrap(shared).ok().expect("writers done").into_inner().unwrap()
}

/// Waits until `server` answers a Stats call again (its database is back); returns how long.
async fn wait_until_served(server: &mut Server) -> Duration {
    let started = Instant::now();
    loop {
        match server.client.stats(pb::StatsRequest { collection: COLLECTION.into() }).await {
            Ok(_) => return started.elapsed(),
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "while PostgreSQL restarts: {status:?}");
                assert!(started.elapsed() < Duration::from_secs(60), "bindery did not recover: {status:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_of_bindery_and_of_postgres() {
    let _exclusive = common::exclusive().await;
    let started = Instant::now();
    let data = TempDir::new("pg-crash");
    let mut pg = tokio::task::spawn_blocking(Postgres::start).await.expect("start postgres");
    let url = pg.url("postgres");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    eprintln!("postgres crash test seed {seed:#x}");
    let mut rng = Rng(seed | 1);
    let mut ledger = Ledger::default();
    let kills = pg_kills();

    // bindery killed: each restart reconnects to the database and finds every acknowledged write.
    let mut server = start(&data, Some(&url)).await;
    let create = pb::CreateCollectionRequest {
        name: COLLECTION.into(),
        metric: pb::Metric::Dot as i32,
        ..Default::default()
    };
    server.client.create_collection(create).await.expect("create");
    for round in 0..kills {
        let (client, child) = (server.client.clone(), &mut server.child);
        ledger = one_round(&client, round, &mut rng, ledger, || {
            child.kill().expect("SIGKILL bindery");
            child.wait().expect("reap");
        })
        .await;
        server = start(&data, Some(&url)).await;
        verify(&mut server, &mut ledger).await;
    }
    let acked_bindery = ledger.acked.len();

    // PostgreSQL killed under the same bindery: its calls fail with UNAVAILABLE meanwhile, and it
    // serves again, every acknowledged write present, once PostgreSQL is back.
    let mut slowest_recovery = Duration::ZERO;
    for round in kills..2 * kills {
        ledger = one_round(&server.client.clone(), round, &mut rng, ledger, || pg.kill()).await;
        let refused = server.client.stats(pb::StatsRequest { collection: COLLECTION.into() }).await;
        let refused = refused.expect_err("no database, no answer");
        assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
        assert!(refused.message().contains("unavailable"), "{refused:?}");
        pg = tokio::task::spawn_blocking(move || {
            pg.run();
            pg
        })
        .await
        .expect("restart postgres");
        slowest_recovery = slowest_recovery.max(wait_until_served(&mut server).await);
        verify(&mut server, &mut ledger).await;
    }
    server.child.kill().expect("kill");
    server.child.wait().expect("reap");
    let acked_total = ledger.acked.len();
    eprintln!(
        "{kills} bindery kills and {kills} PostgreSQL kills: {acked_total} acknowledged writes \
         ({acked_bindery} in the bindery rounds), {} live items, 0 lost; slowest return to service \
         after PostgreSQL came back: {:.2}s; {:.1}s",
        acked_state(&ledger).len(),
        slowest_recovery.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(acked_bindery >= kills * 5, "too few writes to mean anything: {acked_bindery}");
    assert!(acked_total - acked_bindery >= kills * 5, "too few writes to mean anything: {acked_total}");
    assert!(!acked_deletes(&ledger).is_empty(), "acknowledged deletes were checked");
}
