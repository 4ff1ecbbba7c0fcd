//! Room history: the last N lines of each room in memory, and optionally in SQLite so a
//! restarted server still shows them, with their ids and times (ids keep increasing across a
//! restart, so a page that resumes with the last id it saw gets no line twice).
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

use crate::chat::framing::{LineId, RoomLine};

/// Lines kept per room by default.
pub const DEFAULT_HISTORY_LINES: usize = 100;

/// Lines waiting for the database writer; past this, new lines are kept in memory only.
const STORE_BACKLOG: usize = 65_536;

/// The last lines of one room, oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ring {
    lines: VecDeque<RoomLine>,
}

impl Ring {
    pub(crate) fn push(&mut self, line: RoomLine, keep: usize) {
        if keep == 0 {
            return;
        }
        while self.lines.len() >= keep {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// The last `n` lines, oldest first.
    pub(crate) fn last(&self, n: usize) -> impl Iterator<Item = &RoomLine> {
        self.lines.iter().skip(self.lines.len().saturating_sub(n))
    }

    /// The lines after id `after`, oldest first; `None` when the ring cannot tell (lines
    /// after it were already pushed out, or the id is unknown here).
    pub(crate) fn after(&self, after: LineId) -> Option<impl Iterator<Item = &RoomLine>> {
        let first = self.lines.front()?.id;
        let last = self.lines.back()?.id;
        // Local ids are consecutive, so a gap shows; stream ids are not, so anything
        // before the oldest kept line may have had lines after it pushed out.
        let is_gap = if first.is_local() {
            after.number().saturating_add(1) < first.number()
        } else {
            after < first
        };
        if is_gap || after > last {
            return None;
        }
        Some(self.lines.iter().filter(move |line| line.id > after))
    }

    /// The id of the newest line.
    pub(crate) fn last_id(&self) -> Option<LineId> {
        self.lines.back().map(|line| line.id)
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
    Append { room: String, line: RoomLine },
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
        // Per-room ids and times in milliseconds came later: older rows number by row id.
        let has_seq = conn.prepare("SELECT seq FROM lines LIMIT 0").is_ok();
        if !has_seq {
            conn.execute_batch(
                "ALTER TABLE lines ADD COLUMN seq INTEGER;
                 ALTER TABLE lines ADD COLUMN at_ms INTEGER;",
            )
            .map_err(db_err)?;
        }
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
    pub(crate) fn append(&self, room: &str, line: RoomLine) {
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
        "SELECT room, line, coalesce(seq, id), coalesce(at_ms, at * 1000) FROM (
             SELECT room, line, id, seq, at, at_ms,
                    row_number() OVER (PARTITION BY room ORDER BY id DESC) AS age
             FROM lines)
         WHERE age <= ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([keep as i64], |row| {
        Ok((
            row.get::<_, String>(0)?,
            // Text or blob: older versions' rows may hold either.
            row.get_ref(1)?.as_bytes()?.to_vec(),
            row.get::<_, i64>(2)?,
            row.get::<_, i64>(3)?,
        ))
    })?;
    for row in rows {
        let (room, line, id, at_ms) = row?;
        let id = u64::try_from(id).unwrap_or(0);
        match RoomLine::parse(LineId::local(id), at_ms, Bytes::from(line)) {
            Some(line) => rooms.entry(room).or_default().push(line, keep),
            None => warn!(room, id, "history line not understood; skipped"),
        }
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
        let mut insert = tx.prepare_cached(
            "INSERT INTO lines (room, at, line, seq, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for Job::Append { room, line } in jobs {
            let seq = i64::try_from(line.id.number()).unwrap_or(i64::MAX);
            insert.execute(rusqlite::params![room, at, &line.line[..], seq, line.at_ms])?;
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
    use crate::chat::framing::LineKind;

    fn said(id: u64, text: &str) -> RoomLine {
        RoomLine {
            id: LineId::local(id),
            at_ms: 1_000 + id as i64,
            kind: LineKind::Message,
            nick: "a".into(),
            line: RoomLine::format(LineKind::Message, "a", text),
        }
    }

    fn texts<'a>(lines: impl Iterator<Item = &'a RoomLine>) -> Vec<String> {
        lines.map(|l| l.text().to_owned()).collect()
    }

    #[test]
    fn ring_keeps_the_last_lines() {
        let mut ring = Ring::default();
        for i in 0..5 {
            ring.push(said(i + 1, &i.to_string()), 3);
        }
        assert_eq!(texts(ring.last(10)), ["2", "3", "4"]);
        assert_eq!(texts(ring.last(1)), ["4"]);
        ring.push(said(9, "x"), 0);
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.last_id(), Some(LineId::local(5)));
    }

    #[test]
    fn ring_tells_what_came_after_an_id_when_it_can() {
        let mut ring = Ring::default();
        for i in 1..=5 {
            ring.push(said(i, &i.to_string()), 3);
        }
        assert_eq!(texts(ring.after(LineId::local(3)).unwrap()), ["4", "5"]);
        assert_eq!(
            texts(ring.after(LineId::local(2)).unwrap()),
            ["3", "4", "5"]
        );
        assert_eq!(
            texts(ring.after(LineId::local(5)).unwrap()),
            Vec::<String>::new()
        );
        assert!(
            ring.after(LineId::local(1)).is_none(),
            "line 2 was pushed out: cannot resume exactly"
        );
        assert!(
            ring.after(LineId::local(6)).is_none(),
            "an id from another server"
        );
    }

    #[test]
    fn store_survives_reopening_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        {
            let (mut store, rooms) = Store::open(&path, 3).unwrap();
            assert!(rooms.is_empty());
            for i in 0..1500 {
                store.append("lobby", said(i + 1, &i.to_string()));
            }
            store.append("rust", said(1, "hi"));
            store.close();
        }
        let (_store, rooms) = Store::open(&path, 3).unwrap();
        let lobby: Vec<_> = rooms["lobby"]
            .last(10)
            .map(|l| (l.id.number(), l.at_ms, l.text().to_owned()))
            .collect();
        assert_eq!(
            lobby,
            [
                (1498, 2498, "1497".to_owned()),
                (1499, 2499, "1498".into()),
                (1500, 2500, "1499".into())
            ]
        );
        assert_eq!(rooms["lobby"].last_id(), Some(LineId::local(1500)));
        assert_eq!(rooms["rust"].len(), 1);
    }

    #[test]
    fn a_database_of_an_older_version_is_read_and_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE lines (id INTEGER PRIMARY KEY, room TEXT NOT NULL,
                     at INTEGER NOT NULL, line BLOB NOT NULL);
                 INSERT INTO lines (room, at, line) VALUES ('lobby', 5, '<bob> old one
');
                 INSERT INTO lines (room, at, line) VALUES ('lobby', 6, '* bob waves
');",
            )
            .unwrap();
        }
        let (mut store, rooms) = Store::open(&path, 10).unwrap();
        let lobby: Vec<_> = rooms["lobby"]
            .last(10)
            .map(|l| (l.id.number(), l.at_ms, l.kind, l.text().to_owned()))
            .collect();
        assert_eq!(
            lobby,
            [
                (1, 5000, LineKind::Message, "old one".to_owned()),
                (2, 6000, LineKind::Action, "waves".into())
            ]
        );
        store.append("lobby", said(3, "new"));
        store.close();
        let (_store, rooms) = Store::open(&path, 10).unwrap();
        assert_eq!(rooms["lobby"].last_id(), Some(LineId::local(3)));
    }
}
