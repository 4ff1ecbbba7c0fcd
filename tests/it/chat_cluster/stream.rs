//! The room streams as the log: history from them, entries of other writers and versions.

use super::*;

#[test]
fn a_fresh_node_replays_history_from_the_stream() {
    let redis = Redis::start();
    let a = node(&redis, "a");
    let mut alice = Client::join(a.addr, "alice");
    for n in 0..5 {
        alice.send(&format!("line {n}"));
    }
    alice.send("/join rust");
    alice.expect("you joined #rust");
    alice.send("in rust");
    // Lines reach history as they come back from the stream: wait until it holds this one.
    let deadline = Instant::now() + WAIT;
    while !redis
        .cli(&["XRANGE", "sockit:room:rust", "-", "+"])
        .contains("in rust")
    {
        assert!(
            Instant::now() < deadline,
            "the line never reached the stream"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A node started afterwards shows both rooms' past, from Redis.
    let b = node(&redis, "b");
    let mut carol = Client::connect(b.addr);
    carol.expect("last 5 lines of #lobby");
    for n in 0..5 {
        carol.expect(&format!("<alice> line {n}"));
    }
    carol.expect("end of history");
    carol.send("/join rust");
    carol.expect("<alice> in rust");
    // Line ids are the stream's entry ids.
    let ids = redis.cli(&["XRANGE", "sockit:room:lobby", "-", "+", "COUNT", "1"]);
    assert!(ids.contains('-'), "{ids}");
}

#[test]
fn entries_written_field_by_field_by_earlier_versions_still_show_as_history() {
    let redis = Redis::start();
    // Before entries were packed into one field, each field was its own (the line as
    // members see it).
    redis.cli(&["SADD", "sockit:rooms", "lobby"]);
    for (seq, kind, line) in [
        ("1", "m", "<olga> old line\n"),
        ("2", "a", "* olga waves\n"),
    ] {
        redis.cli(&[
            "XADD",
            "sockit:room:lobby",
            "*",
            "n",
            "old/1",
            "q",
            seq,
            "k",
            kind,
            "c",
            "0",
            "u",
            "olga",
            "t",
            "1700000000000",
            "l",
            line,
        ]);
    }
    let a = node(&redis, "a");
    let mut carol = Client::connect(a.addr);
    carol.expect("last 2 lines of #lobby");
    carol.expect("<olga> old line");
    carol.expect("* olga waves");
    carol.expect("end of history");
}

#[test]
fn history_is_read_past_the_first_page_of_entries() {
    let redis = Redis::start();
    redis.cli(&["SADD", "sockit:rooms", "lobby"]);
    // 150 entries of one line each, in the packed format README describes (a node appends
    // runs of lines; one line per entry makes the most entries per line of history).
    let script = r#"
        for i = 0, 149 do
            local body = "<olga> line " .. i .. "\n"
            local record = string.format("m %d 0 1700000000000 5 4 0 %d\nold/1olga%s", i + 1, #body, body)
            redis.call("XADD", KEYS[1], "*", "e", record)
        end
        return redis.call("XLEN", KEYS[1])
    "#;
    let len = redis.cli(&["EVAL", script, "1", "sockit:room:lobby"]);
    assert_eq!(len.trim(), "150");
    let a = node(&redis, "a");
    let mut carol = Client::connect(a.addr);
    // The default history is 100 lines: the newest 100, oldest first.
    carol.expect("last 100 lines of #lobby");
    for n in 50..150 {
        carol.expect(&format!("<olga> line {n}"));
    }
    carol.expect("end of history");
}

/// CPU time (user + system, clock ticks) a process has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses: utime and stime are the 12th
    // and 13th of them.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = after
        .split(' ')
        .skip(11)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    fields.iter().sum()
}

#[test]
fn an_entry_another_program_added_is_passed_over_without_spinning() {
    let redis = Redis::start();
    let a = node(&redis, "a");
    let mut alice = Client::join(a.addr, "alice");
    let mut bob = Client::join(a.addr, "bob");
    alice.send("before");
    bob.expect("<alice> before");
    // Not a sockit entry, and the newest in the stream: the reader must read past it, not
    // read it again and again.
    redis.cli(&["XADD", "sockit:room:lobby", "*", "foo", "bar"]);
    std::thread::sleep(Duration::from_millis(300));
    let start = cpu_ticks(a.child.id());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(a.child.id()) - start;
    assert!(
        used < 30,
        "the node used {used} ticks of CPU in a second doing nothing"
    );
    alice.send("after");
    bob.expect("<alice> after");
}
