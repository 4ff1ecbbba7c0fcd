//! Room history: the last N lines of each room in memory, and optionally in SQLite so a
//! restarted server still shows them.
//!
//! The in-memory ring is what joins replay; it is updated before a line is fanned out. The
//! database is written by its own thread in batched transactions (WAL), so a slow disk never
//! blocks the hub; a graceful shutdown waits for every line to be written.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tracing::{error, warn};

/// Lines kept per room by default.
pub const DEFAULT_HISTORY_LINES: usize = 100;

/// Lines waiting for the database writer; past this, new lines are kept in memory only.
const STORE_BACKLOG: usize = 65_536;

/// The last lines of one room, oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ring {
    lines: VecDeque<Bytes>,
}

impl Ring {
    pub(crate) fn push(&mut self, line: Bytes, keep: usize) {
        if keep == 0 {
            return;
        }
        while self.lines.len() >= keep {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// The last `n` lines, oldest first.
    pub(crate) fn last(&self, n: usize) -> impl Iterator<Item = &Bytes> {
        self.lines.iter().skip(self.lines.len().saturating_sub(n))
    }

    pub(crate) fn len(&self) -> usize {
        self.lines.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// Why the history database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Opening, creating or reading the database failed.
    #[error("chat history database {path}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The writer thread could not start.
    #[error("cannot start the chat history writer")]
    Thread(#[source] std::io::Error),
}

enum Job {
    Append { room: String, line: Bytes },
}

/// The SQLite side of history: loads at start, appends from a writer thread.
#[derive(Debug)]
pub(crate) struct Store {
    jobs: Option<mpsc::SyncSender<Job>>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl Store {
    /// Opens (or creates) the database and returns it with the last `keep` lines per room.
    pub(crate) fn open(
        path: &Path,
        keep: usize,
    ) -> Result<(Store, HashMap<String, Ring>), HistoryError> {
        let db_err = |source| HistoryError::Db {
            path: path.to_owned(),
            source,
        };
        let conn = rusqlite::Connection::open(path).map_err(db_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS lines (
                 id   INTEGER PRIMARY KEY,
                 room TEXT    NOT NULL,
                 at   INTEGER NOT NULL,
                 line BLOB    NOT NULL
             );
             CREATE INDEX IF NOT EXISTS lines_by_room ON lines (room, id);",
        )
        .map_err(db_err)?;
        let rooms = load(&conn, keep).map_err(db_err)?;
        let (jobs, queue) = mpsc::sync_channel(STORE_BACKLOG);
        let path = path.to_owned();
        let writer = std::thread::Builder::new()
            .name("chat-history".into())
            .spawn(move || write_jobs(conn, queue, keep, &path))
            .map_err(HistoryError::Thread)?;
        Ok((
            Store {
                jobs: Some(jobs),
                writer: Some(writer),
            },
            rooms,
        ))
    }

    /// Queues a line for the database; never blocks.
    pub(crate) fn append(&self, room: &str, line: Bytes) {
        if let Some(jobs) = &self.jobs {
            let job = Job::Append {
                room: room.to_owned(),
                line,
            };
            if jobs.try_send(job).is_err() {
                warn!(room, "history database is behind; line kept in memory only");
            }
        }
    }

    /// Writes every queued line and closes the database.
    pub(crate) fn close(&mut self) {
        self.jobs = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

fn load(conn: &rusqlite::Connection, keep: usize) -> rusqlite::Result<HashMap<String, Ring>> {
    let mut rooms: HashMap<String, Ring> = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT room, line FROM (
             SELECT room, line, id,
                    row_number() OVER (PARTITION BY room ORDER BY id DESC) AS age
             FROM lines)
         WHERE age <= ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([keep as i64], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
    })?;
    for row in rows {
        let (room, line) = row?;
        rooms.entry(room).or_default().push(Bytes::from(line), keep);
    }
    Ok(rooms)
}

fn write_jobs(
    mut conn: rusqlite::Connection,
    queue: mpsc::Receiver<Job>,
    keep: usize,
    path: &Path,
) {
    let mut since_prune = 0usize;
    while let Ok(first) = queue.recv() {
        // Everything already waiting goes into the same transaction.
        let mut jobs = vec![first];
        while jobs.len() < 4096 {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        since_prune += jobs.len();
        let prune = since_prune >= 1000;
        if prune {
            since_prune = 0;
        }
        if let Err(err) = write_batch(&mut conn, &jobs, prune.then_some(keep)) {
            error!(path = %path.display(), error = %err, lost = jobs.len(), "cannot write chat history");
        }
    }
}

fn write_batch(
    conn: &mut rusqlite::Connection,
    jobs: &[Job],
    prune_to: Option<usize>,
) -> rusqlite::Result<()> {
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let tx = conn.transaction()?;
    {
        let mut insert =
            tx.prepare_cached("INSERT INTO lines (room, at, line) VALUES (?1, ?2, ?3)")?;
        for Job::Append { room, line } in jobs {
            insert.execute(rusqlite::params![room, at, &line[..]])?;
        }
    }
    if let Some(keep) = prune_to {
        tx.execute(
            "DELETE FROM lines WHERE id IN (
                 SELECT id FROM (
                     SELECT id, row_number() OVER (PARTITION BY room ORDER BY id DESC) AS age
                     FROM lines)
                 WHERE age > ?1)",
            [keep as i64],
        )?;
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_last_lines() {
        let mut ring = Ring::default();
        for i in 0..5 {
            ring.push(Bytes::from(format!("{i}")), 3);
        }
        let last: Vec<_> = ring.last(10).cloned().collect();
        assert_eq!(last, ["2", "3", "4"].map(Bytes::from));
        let last: Vec<_> = ring.last(1).cloned().collect();
        assert_eq!(last, [Bytes::from_static(b"4")]);
        ring.push(Bytes::from_static(b"x"), 0);
        assert_eq!(ring.len(), 3);
    }

    #[test]
    fn store_survives_reopening_and_prunes() {
        let dir = std::env::temp_dir().join(format!("sockit-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chat.db");
        let _ = std::fs::remove_file(&path);
        {
            let (mut store, rooms) = Store::open(&path, 3).unwrap();
            assert!(rooms.is_empty());
            for i in 0..1500 {
                store.append("lobby", Bytes::from(format!("<a> {i}\n")));
            }
            store.append("rust", Bytes::from_static(b"<b> hi\n"));
            store.close();
        }
        let (_store, rooms) = Store::open(&path, 3).unwrap();
        let lobby: Vec<_> = rooms["lobby"].last(10).cloned().collect();
        assert_eq!(
            lobby,
            ["<a> 1497\n", "<a> 1498\n", "<a> 1499\n"].map(Bytes::from)
        );
        assert_eq!(rooms["rust"].len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
