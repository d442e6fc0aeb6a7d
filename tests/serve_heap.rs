//! `gtk serve` hands back the memory freed while an export is read (`serve::heap`): without
//! it, 1,000 LeNet-5 tasks held 21.6 MB resident instead of 18.3 MB. Alone in its own test
//! binary, so no other test allocates while the resident size is read.

/// Resident size of this process in KB (Linux: /proc/self/statm, 4 KB pages).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn resident_kb() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn freed_holes_between_kept_allocations_go_back_to_the_system() {
    // Kept blocks interleaved with temporaries, as reading an export's header and task set
    // between the masks it keeps does; 2,000 × 16 KB = 32 MB of temporaries, each hole holding
    // at least three whole pages.
    let mut kept = Vec::new();
    let mut temporary = Vec::new();
    for i in 0..2000 {
        kept.push(vec![i as u8; 64]);
        temporary.push(vec![i as u8; 16_000]);
    }
    let with_temporaries = resident_kb();
    drop(temporary);
    let freed_only = resident_kb();
    gatekit::serve::heap::release_freed();
    let trimmed = resident_kb();
    // glibc keeps the holes mapped on its own...
    assert!(
        freed_only + 8_000 > with_temporaries,
        "free() alone returned the holes ({with_temporaries} → {freed_only} KB): the trim is not needed"
    );
    // ...and the trim hands at least half of the 32 MB back.
    assert!(
        trimmed + 16_000 < with_temporaries,
        "resident {with_temporaries} KB with the temporaries, {trimmed} KB after the trim"
    );
    assert_eq!(kept.iter().map(|k| k.len()).sum::<usize>(), 2000 * 64);
}
