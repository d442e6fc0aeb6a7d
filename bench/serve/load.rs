//! A closed-loop HTTP/1.1 load generator for `bench/serve/run.sh`, std only (built with plain
//! `rustc -O`, no crates to fetch): `--connections` keep-alive connections, each sending the
//! same `.npy` body to a task's predict route as soon as the previous answer arrived, for
//! `--seconds` after `--warmup` seconds; it prints one JSON object with the request count,
//! non-200 answers, throughput and latency percentiles (ms).
//!
//! usage: load ADDR BODY.npy TASKS --mix one|random --connections N --seconds S --warmup W
//! (TASKS: comma separated; `one` sends every request to the first, `random` picks uniformly.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

struct Args {
    addr: String,
    body: Vec<u8>,
    tasks: Vec<String>,
    random: bool,
    connections: usize,
    seconds: f64,
    warmup: f64,
}

fn parse() -> Result<Args, String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 3 {
        return Err("usage: load ADDR BODY.npy TASKS [--mix one|random] [--connections N] [--seconds S] [--warmup W]".into());
    }
    let flag = |name: &str, default: &str| -> String {
        a.iter()
            .position(|x| x == name)
            .and_then(|i| a.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    let body = std::fs::read(&a[1]).map_err(|e| format!("{}: {e}", a[1]))?;
    let num = |name: &str, default: &str| -> Result<f64, String> {
        flag(name, default)
            .parse::<f64>()
            .map_err(|e| format!("{name}: {e}"))
    };
    let mix = flag("--mix", "one");
    if mix != "one" && mix != "random" {
        return Err(format!("--mix {mix}: use one or random"));
    }
    Ok(Args {
        addr: a[0].trim_start_matches("http://").to_string(),
        body,
        tasks: a[2].split(',').map(str::to_string).collect(),
        random: mix == "random",
        connections: num("--connections", "4")?.max(1.0) as usize,
        seconds: num("--seconds", "5")?,
        warmup: num("--warmup", "1")?,
    })
}

/// One request on a kept-alive connection; the status.
fn request(
    conn: &mut BufReader<TcpStream>,
    addr: &str,
    task: &str,
    body: &[u8],
) -> std::io::Result<u16> {
    let head = format!(
        "POST /v1/tasks/{task}/predict HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-npy\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut msg = Vec::with_capacity(head.len() + body.len());
    msg.extend_from_slice(head.as_bytes());
    msg.extend_from_slice(body);
    conn.get_mut().write_all(&msg)?;
    let mut line = String::new();
    conn.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut length = 0usize;
    loop {
        line.clear();
        if conn.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("connection closed in the head"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut sink = vec![0u8; length];
    conn.read_exact(&mut sink)?;
    Ok(status)
}

fn main() {
    let args = match parse() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(args.warmup);
    let end = warm_end + Duration::from_secs_f64(args.seconds);
    let failed = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..args.connections)
        .map(|c| {
            let (args, failed) = (args.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut lat: Vec<f64> = Vec::new();
                let mut errors = 0u64;
                let mut rng =
                    0x9E37_79B9_7F4A_7C15u64 ^ (c as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
                let connect = || -> std::io::Result<BufReader<TcpStream>> {
                    let s = TcpStream::connect(&args.addr)?;
                    s.set_nodelay(true)?;
                    Ok(BufReader::with_capacity(1 << 16, s))
                };
                let mut conn = match connect() {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("connect {}: {e}", args.addr);
                        failed.store(true, Ordering::SeqCst);
                        return (lat, errors);
                    }
                };
                loop {
                    let now = Instant::now();
                    if now >= end {
                        break;
                    }
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let task = if args.random {
                        &args.tasks[(rng % args.tasks.len() as u64) as usize]
                    } else {
                        &args.tasks[0]
                    };
                    let t0 = Instant::now();
                    let r = request(&mut conn, &args.addr, task, &args.body);
                    let dt = t0.elapsed().as_secs_f64() * 1e3;
                    let counted = t0 >= warm_end;
                    match r {
                        Ok(200) if counted => lat.push(dt),
                        Ok(200) => {}
                        Ok(_) if counted => errors += 1,
                        Ok(_) => {}
                        Err(_) => {
                            if counted {
                                errors += 1;
                            }
                            match connect() {
                                Ok(c) => conn = c,
                                Err(_) => break,
                            }
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all: Vec<f64> = Vec::new();
    let mut errors = 0u64;
    for t in threads {
        let (l, e) = t.join().unwrap_or_default();
        all.extend(l);
        errors += e;
    }
    if failed.load(Ordering::SeqCst) && all.is_empty() {
        std::process::exit(1);
    }
    all.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return f64::NAN;
        }
        all[((p / 100.0) * (all.len() - 1) as f64).round() as usize]
    };
    let mean = all.iter().sum::<f64>() / all.len().max(1) as f64;
    println!(
        "{{\"requests\": {}, \"errors\": {errors}, \"seconds\": {}, \"rps\": {:.1}, \"mean_ms\": {mean:.3}, \"p50_ms\": {:.3}, \"p90_ms\": {:.3}, \"p99_ms\": {:.3}, \"connections\": {}}}",
        all.len(),
        args.seconds,
        all.len() as f64 / args.seconds,
        pct(50.0),
        pct(90.0),
        pct(99.0),
        args.connections
    );
}
