//! Split points: a body cut into chunks every way a test wants to try.

/// `body` cut at `at` into two chunks.
pub fn two(body: &[u8], at: usize) -> [&[u8]; 2] {
    let (a, b) = body.split_at(at.min(body.len()));
    [a, b]
}

/// Every cut of `body` into two chunks, the empty first chunk included.
pub fn every_two(body: &[u8]) -> impl Iterator<Item = [&[u8]; 2]> {
    (0..=body.len()).map(move |at| two(body, at))
}

/// `body` in chunks of `size` bytes (the last may be shorter).
pub fn chunks(body: &[u8], size: usize) -> Vec<&[u8]> {
    body.chunks(size.max(1)).collect()
}

/// `body` cut at each of `points` (ascending, clamped to the body).
pub fn at<'b>(body: &'b [u8], points: &[usize]) -> Vec<&'b [u8]> {
    let mut out = Vec::with_capacity(points.len() + 1);
    let mut from = 0;
    for &p in points {
        let p = p.clamp(from, body.len());
        out.push(&body[from..p]);
        from = p;
    }
    out.push(&body[from..]);
    out
}
