//! One compressed series, bit-packed as Gorilla (Facebook's TSDB) does: delta-of-delta
//! timestamps, delta-of-delta integers, XOR floats; a steady point costs two bits.

use crate::batch::MetricValue;

/// Whether a series holds integers or floats (Heapster keeps them apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Float,
}

/// A compressed run of points in time order. The first point lives in the header; every
/// further point is a bit string: the timestamp's delta-of-delta, then the value's
/// delta-of-delta (integers) or its XOR with the previous value (floats). Each of the two is
/// one `0` bit when zero (a steady resolution, a steady counter rate or an unchanged value),
/// else a `1` bit, 6 bits of length and the significant bits (floats: 6 bits of trailing zeros
/// first, which are not stored).
#[derive(Debug, Clone)]
pub struct Series {
    data: Vec<u8>,
    /// Bits of `data` in use.
    bits: u32,
    count: u32,
    kind: Kind,
    first_ts: i64,
    first_val: u64,
    last_ts: i64,
    last_ts_delta: i64,
    last_val: u64,
    last_val_delta: i64,
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn bits(kind: Kind, v: MetricValue) -> u64 {
    match (kind, v) {
        (Kind::Int, MetricValue::Int(i)) => i as u64,
        (Kind::Int, MetricValue::Float(f)) => (f as i64) as u64,
        (Kind::Float, MetricValue::Float(f)) => f.to_bits(),
        (Kind::Float, MetricValue::Int(i)) => (i as f64).to_bits(),
    }
}

fn value(kind: Kind, bits: u64) -> MetricValue {
    match kind {
        Kind::Int => MetricValue::Int(bits as i64),
        Kind::Float => MetricValue::Float(f64::from_bits(bits)),
    }
}

/// Appends bits to a byte vector, most significant first.
struct Writer<'a> {
    data: &'a mut Vec<u8>,
    bits: &'a mut u32,
}

impl Writer<'_> {
    /// Writes the low `n` bits of `v` (n ≤ 64).
    fn put(&mut self, v: u64, n: u32) {
        let mut left = n;
        while left > 0 {
            let used = *self.bits % 8;
            if used == 0 {
                // Grow by a quarter (at least 4 bytes) rather than doubling: a full window is
                // ~60 points, and doubling left up to half of every series' buffer unused.
                if self.data.len() == self.data.capacity() {
                    self.data.reserve_exact((self.data.len() / 4).max(4));
                }
                self.data.push(0);
            }
            let room = 8 - used;
            let take = room.min(left);
            let chunk = ((v >> (left - take)) & ((1u64 << take) - 1)) as u8;
            *self.data.last_mut().expect("pushed above") |= chunk << (room - take);
            *self.bits += take;
            left -= take;
        }
    }

    /// `0` for zero, else `1`, 6 bits of (length - 1) and the `length` significant bits.
    fn put_num(&mut self, v: u64) {
        if v == 0 {
            self.put(0, 1);
        } else {
            let n = 64 - v.leading_zeros();
            self.put(1, 1);
            self.put(u64::from(n - 1), 6);
            self.put(v, n);
        }
    }
}

/// Reads what [`Writer`] wrote.
struct Reader<'a> {
    data: &'a [u8],
    pos: u32,
    end: u32,
}

impl Reader<'_> {
    fn get(&mut self, n: u32) -> Option<u64> {
        if self.pos + n > self.end {
            return None;
        }
        let mut v = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = self.data[(self.pos / 8) as usize];
            let used = self.pos % 8;
            let room = 8 - used;
            let take = room.min(left);
            let chunk = (byte >> (room - take)) & (((1u16 << take) - 1) as u8);
            v = if take == 64 { 0 } else { v << take } | u64::from(chunk);
            self.pos += take;
            left -= take;
        }
        Some(v)
    }

    fn get_num(&mut self) -> Option<u64> {
        if self.get(1)? == 0 {
            return Some(0);
        }
        let n = self.get(6)? as u32 + 1;
        self.get(n)
    }
}

impl Series {
    /// A series holding one point; its kind is the kind of that first value.
    pub fn new(ts_ms: i64, v: MetricValue) -> Series {
        let kind = match v {
            MetricValue::Int(_) => Kind::Int,
            MetricValue::Float(_) => Kind::Float,
        };
        let b = bits(kind, v);
        Series {
            data: Vec::new(),
            bits: 0,
            count: 1,
            kind,
            first_ts: ts_ms,
            first_val: b,
            last_ts: ts_ms,
            last_ts_delta: 0,
            last_val: b,
            last_val_delta: 0,
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn first_ts(&self) -> i64 {
        self.first_ts
    }

    pub fn last_ts(&self) -> i64 {
        self.last_ts
    }

    /// The newest point.
    pub fn last(&self) -> (i64, MetricValue) {
        (self.last_ts, value(self.kind, self.last_val))
    }

    /// Appends a point; a point not newer than the last one replaces nothing and is refused.
    pub fn push(&mut self, ts_ms: i64, v: MetricValue) -> bool {
        if ts_ms <= self.last_ts || self.bits > u32::MAX - 256 {
            return false;
        }
        let delta = ts_ms.wrapping_sub(self.last_ts);
        let b = bits(self.kind, v);
        let mut w = Writer {
            data: &mut self.data,
            bits: &mut self.bits,
        };
        w.put_num(zigzag(delta.wrapping_sub(self.last_ts_delta)));
        match self.kind {
            Kind::Int => {
                let vd = (b as i64).wrapping_sub(self.last_val as i64);
                w.put_num(zigzag(vd.wrapping_sub(self.last_val_delta)));
                self.last_val_delta = vd;
            }
            Kind::Float => {
                let x = b ^ self.last_val;
                if x == 0 {
                    w.put(0, 1);
                } else {
                    let tz = x.trailing_zeros();
                    w.put(1, 1);
                    w.put(u64::from(tz), 6);
                    w.put_num(x >> tz);
                }
            }
        }
        self.last_ts_delta = delta;
        self.last_ts = ts_ms;
        self.last_val = b;
        self.count += 1;
        true
    }

    /// Every point, oldest first.
    pub fn points(&self) -> Vec<(i64, MetricValue)> {
        let mut out = Vec::with_capacity(self.count as usize);
        self.for_each(|ts, v| out.push((ts, v)));
        out
    }

    /// Calls `f` for every point, oldest first; stops at the first corrupt bit.
    pub fn for_each(&self, mut f: impl FnMut(i64, MetricValue)) {
        if self.count == 0 {
            return;
        }
        let (mut ts, mut b) = (self.first_ts, self.first_val);
        let (mut td, mut vd) = (0i64, 0i64);
        f(ts, value(self.kind, b));
        let mut r = Reader {
            data: &self.data,
            pos: 0,
            end: self.bits,
        };
        for _ in 1..self.count {
            let Some(dod) = r.get_num() else {
                return;
            };
            td = td.wrapping_add(unzigzag(dod));
            ts = ts.wrapping_add(td);
            match self.kind {
                Kind::Int => {
                    let Some(d) = r.get_num() else {
                        return;
                    };
                    vd = vd.wrapping_add(unzigzag(d));
                    b = (b as i64).wrapping_add(vd) as u64;
                }
                Kind::Float => {
                    let Some(tag) = r.get(1) else {
                        return;
                    };
                    if tag != 0 {
                        let (Some(tz), Some(x)) = (r.get(6), r.get_num()) else {
                            return;
                        };
                        b ^= x << tz;
                    }
                }
            }
            f(ts, value(self.kind, b));
        }
    }

    /// Drops the points older than `cutoff_ms`; returns false when nothing is left.
    pub fn trim(&mut self, cutoff_ms: i64) -> bool {
        if self.first_ts >= cutoff_ms {
            return true;
        }
        if self.last_ts < cutoff_ms {
            self.count = 0;
            self.bits = 0;
            self.data = Vec::new();
            return false;
        }
        let mut kept: Option<Series> = None;
        let kind = self.kind;
        self.for_each(|ts, v| {
            if ts >= cutoff_ms {
                match kept.as_mut() {
                    Some(s) => {
                        s.push(ts, v);
                    }
                    None => {
                        let mut s = Series::new(ts, v);
                        s.kind = kind;
                        s.first_val = bits(kind, v);
                        s.last_val = s.first_val;
                        kept = Some(s);
                    }
                }
            }
        });
        match kept {
            Some(mut s) => {
                s.data.shrink_to_fit();
                *self = s;
                true
            }
            None => false,
        }
    }

    /// Heap bytes held by the encoded points.
    pub fn heap_bytes(&self) -> usize {
        self.data.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_round_trip_including_resets_and_extremes() {
        let vals = [5i64, 10, 20, 30, 3, 3, i64::MAX, i64::MIN, 0, -7];
        let mut s = Series::new(1000, MetricValue::Int(vals[0]));
        for (i, v) in vals.iter().enumerate().skip(1) {
            assert!(s.push(
                1000 + i as i64 * 15_000 + (i as i64 % 3),
                MetricValue::Int(*v)
            ));
        }
        let got: Vec<i64> = s
            .points()
            .iter()
            .map(|(_, v)| match v {
                MetricValue::Int(i) => *i,
                _ => panic!(),
            })
            .collect();
        assert_eq!(got, vals);
        assert_eq!(s.points()[4].0, 1000 + 4 * 15_000 + 1);
    }

    #[test]
    fn floats_round_trip_and_steady_points_are_small() {
        let mut s = Series::new(0, MetricValue::Float(0.25));
        let vals = [0.25, 0.25, 1.5, f64::NAN, 1e300, -0.0, 123.456];
        for (i, v) in vals.iter().enumerate() {
            s.push((i as i64 + 1) * 15_000, MetricValue::Float(*v));
        }
        let pts = s.points();
        assert_eq!(pts.len(), 8);
        for (i, v) in vals.iter().enumerate() {
            let MetricValue::Float(got) = pts[i + 1].1 else {
                panic!()
            };
            assert_eq!(got.to_bits(), v.to_bits());
        }
        // A steady counter at a steady resolution costs two bits a point (after the first two
        // points), and the buffer grows by a quarter, not by doubling.
        let mut c = Series::new(0, MetricValue::Int(0));
        for i in 1..=60 {
            c.push(i * 15_000, MetricValue::Int(i * 1_000_000));
        }
        assert!(c.heap_bytes() <= 28, "{}", c.heap_bytes());
        assert_eq!(c.points().len(), 61);
        assert_eq!(c.points()[60], (900_000, MetricValue::Int(60_000_000)));
        // An unchanged float: also two bits a point.
        let mut g = Series::new(0, MetricValue::Float(0.5));
        for i in 1..=60 {
            g.push(i * 15_000, MetricValue::Float(0.5));
        }
        assert!(g.heap_bytes() <= 24, "{}", g.heap_bytes());
        assert!(g.points().iter().all(|p| p.1 == MetricValue::Float(0.5)));
        // 100 irregular points: still within a quarter plus one point of what they use.
        let mut d = Series::new(0, MetricValue::Int(0));
        let mut used = 0;
        for i in 1..=100i64 {
            d.push(
                i * 15_000 + (i * 7919) % 500,
                MetricValue::Int(i * i * 1_000_003),
            );
            used = d.data.len();
        }
        assert!(
            d.heap_bytes() <= used + used / 4 + 24,
            "{} for {used}",
            d.heap_bytes()
        );
        assert_eq!(d.points().len(), 101);
    }

    /// Random gaps, random integers and floats of every magnitude, and their extremes, read
    /// back bit for bit.
    #[test]
    fn random_points_round_trip() {
        let mut rng = fastrand::Rng::with_seed(7);
        for round in 0..200 {
            let float = round % 2 == 1;
            let gen = |rng: &mut fastrand::Rng| -> MetricValue {
                let raw = match rng.u8(0..4) {
                    0 => rng.u64(..),
                    1 => rng.u64(0..1000),
                    2 => [0, u64::MAX, i64::MIN as u64, i64::MAX as u64][rng.usize(0..4)],
                    _ => 42,
                };
                if float {
                    MetricValue::Float(f64::from_bits(raw))
                } else {
                    MetricValue::Int(raw as i64)
                }
            };
            let mut ts = rng.i64(-1_000_000..1_000_000);
            let first = gen(&mut rng);
            let mut s = Series::new(ts, first);
            let mut want = vec![(ts, first)];
            for _ in 0..rng.usize(0..150) {
                ts += match rng.u8(0..3) {
                    0 => 15_000,
                    1 => rng.i64(1..100_000),
                    _ => rng.i64(1..i64::MAX / 512),
                };
                let v = gen(&mut rng);
                assert!(s.push(ts, v));
                want.push((ts, v));
            }
            let got = s.points();
            assert_eq!(got.len(), want.len(), "round {round}");
            for (g, w) in got.iter().zip(&want) {
                let same = match (g.1, w.1) {
                    (MetricValue::Float(a), MetricValue::Float(b)) => a.to_bits() == b.to_bits(),
                    (a, b) => a == b,
                };
                assert!(g.0 == w.0 && same, "round {round}: {g:?} != {w:?}");
            }
        }
    }

    #[test]
    fn old_points_are_refused_and_trimmed() {
        let mut s = Series::new(100, MetricValue::Int(1));
        assert!(!s.push(100, MetricValue::Int(2)));
        assert!(!s.push(50, MetricValue::Int(2)));
        for t in 2..=10 {
            s.push(t * 100, MetricValue::Int(t));
        }
        assert!(s.trim(550));
        let pts = s.points();
        assert_eq!(pts.first().unwrap(), &(600, MetricValue::Int(6)));
        assert_eq!(pts.len(), 5);
        s.push(1100, MetricValue::Int(11));
        assert_eq!(s.last(), (1100, MetricValue::Int(11)));
        assert!(!s.trim(5000));
    }
}
