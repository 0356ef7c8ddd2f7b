//! One compressed series: delta-of-delta varint timestamps, delta-of-delta integers, XOR floats.

use crate::batch::MetricValue;

/// Whether a series holds integers or floats (Heapster keeps them apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Float,
}

/// A compressed run of points in time order. The first point lives in the header; every
/// further point costs a varint timestamp delta-of-delta (one byte at a steady resolution) and
/// a varint value delta-of-delta (integers) or a shifted XOR with the previous value (floats).
#[derive(Debug, Clone)]
pub struct Series {
    data: Vec<u8>,
    kind: Kind,
    count: u32,
    first_ts: i64,
    first_val: u64,
    last_ts: i64,
    last_ts_delta: i64,
    last_val: u64,
    last_val_delta: i64,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = *data.get(*pos)?;
        *pos += 1;
        if shift >= 64 {
            return None;
        }
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
        shift += 7;
    }
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
            kind,
            count: 1,
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
        if ts_ms <= self.last_ts {
            return false;
        }
        // Grow by a quarter (at least 24 bytes, more than one point's worst case of 21) rather
        // than doubling: a full window is ~60 points, and doubling left up to half of every
        // series' buffer unused (150 MB of 1.5 M series at 1,000 nodes).
        if self.data.capacity() - self.data.len() < 21 {
            self.data.reserve_exact((self.data.len() / 4).max(24));
        }
        let delta = ts_ms - self.last_ts;
        put_varint(
            &mut self.data,
            zigzag(delta.wrapping_sub(self.last_ts_delta)),
        );
        self.last_ts_delta = delta;
        self.last_ts = ts_ms;
        let b = bits(self.kind, v);
        match self.kind {
            Kind::Int => {
                let vd = (b as i64).wrapping_sub(self.last_val as i64);
                put_varint(&mut self.data, zigzag(vd.wrapping_sub(self.last_val_delta)));
                self.last_val_delta = vd;
            }
            Kind::Float => {
                let x = b ^ self.last_val;
                if x == 0 {
                    self.data.push(0);
                } else {
                    let tz = x.trailing_zeros();
                    self.data.push(tz as u8 + 1);
                    put_varint(&mut self.data, x >> tz);
                }
            }
        }
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

    /// Calls `f` for every point, oldest first; stops at the first corrupt byte.
    pub fn for_each(&self, mut f: impl FnMut(i64, MetricValue)) {
        if self.count == 0 {
            return;
        }
        let (mut ts, mut b) = (self.first_ts, self.first_val);
        let (mut td, mut vd) = (0i64, 0i64);
        f(ts, value(self.kind, b));
        let mut pos = 0;
        for _ in 1..self.count {
            let Some(dod) = get_varint(&self.data, &mut pos) else {
                return;
            };
            td = td.wrapping_add(unzigzag(dod));
            ts = ts.wrapping_add(td);
            match self.kind {
                Kind::Int => {
                    let Some(d) = get_varint(&self.data, &mut pos) else {
                        return;
                    };
                    vd = vd.wrapping_add(unzigzag(d));
                    b = (b as i64).wrapping_add(vd) as u64;
                }
                Kind::Float => {
                    let Some(&tag) = self.data.get(pos) else {
                        return;
                    };
                    pos += 1;
                    if tag != 0 {
                        let Some(x) = get_varint(&self.data, &mut pos) else {
                            return;
                        };
                        b ^= x << (tag - 1);
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
        // A steady counter at a steady resolution costs two bytes a point, and the buffer
        // grows by a quarter, not by doubling.
        let mut c = Series::new(0, MetricValue::Int(0));
        for i in 1..=60 {
            c.push(i * 15_000, MetricValue::Int(i * 1_000_000));
        }
        assert!(
            c.heap_bytes() <= 2 * 60 + 2 * 60 / 4 + 21,
            "{}",
            c.heap_bytes()
        );
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
