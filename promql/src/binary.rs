//! Binary operators: arithmetic, comparisons (filter or `bool`), set operators, and vector
//! matching (`on`, `ignoring`, `group_left`, `group_right`).

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};
use rustc_hash::{FxHashMap, FxHasher};

use crate::eval::{format_labels, Elem, Evaluator, Val, NAME};
use crate::storage::Labels;
use crate::Error;

use promql_parser::parser::token::TokenId;

fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Applies `op` to two floats: the value and whether a comparison holds (always true for
/// arithmetic). Comparisons return the left value.
pub(crate) fn apply(op: TokenId, l: f64, r: f64) -> Result<(f64, bool), Error> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_MOD => (l % r, true),
        T_POW => (l.powf(r), true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => return Err(Error::Execution(format!("operator {op} not allowed between numbers"))),
    })
}

struct Matching<'a> {
    on: bool,
    names: Vec<&'a str>,
    card: &'a VectorMatchCardinality,
    include: Vec<&'a str>,
}

impl Matching<'_> {
    fn keeps(&self, name: &str) -> bool {
        if self.on {
            self.names.contains(&name)
        } else {
            name != NAME && !self.names.contains(&name)
        }
    }

    fn signature(&self, l: &Labels) -> u64 {
        let mut h = FxHasher::default();
        for (k, v) in l {
            if self.keeps(k) {
                k.hash(&mut h);
                v.hash(&mut h);
            }
        }
        h.finish()
    }

    fn matched_labels(&self, l: &Labels) -> Labels {
        l.iter()
            .filter(|(k, _)| self.keeps(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

static ONE_TO_ONE: VectorMatchCardinality = VectorMatchCardinality::OneToOne;

pub(crate) fn eval<'s>(ev: &'s Evaluator, b: &BinaryExpr, t: i64) -> Result<Val<'s>, Error> {
    let op = b.op.id();
    let return_bool = b.return_bool();
    if let Some(m) = &b.modifier {
        if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
            return Err(Error::Execution(
                "fill modifiers (experimental) are not supported".into(),
            ));
        }
    }
    let lhs = ev.eval(&b.lhs, t)?;
    let rhs = ev.eval(&b.rhs, t)?;
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => {
            let (v, keep) = apply(op, l, r)?;
            if is_comparison(op) {
                Ok(Val::Scalar(if keep { 1.0 } else { 0.0 }))
            } else {
                Ok(Val::Scalar(v))
            }
        }
        (Val::Vector(v), Val::Scalar(s)) => Ok(Val::Vector(vector_scalar(op, v, s, false, return_bool)?)),
        (Val::Scalar(s), Val::Vector(v)) => Ok(Val::Vector(vector_scalar(op, v, s, true, return_bool)?)),
        (Val::Vector(l), Val::Vector(r)) => {
            let (on, names) = match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
                Some(LabelModifier::Include(l)) => (true, l.labels.iter().map(String::as_str).collect()),
                Some(LabelModifier::Exclude(l)) => (false, l.labels.iter().map(String::as_str).collect()),
                None => (false, Vec::new()),
            };
            let card = b.modifier.as_ref().map(|m| &m.card).unwrap_or(&ONE_TO_ONE);
            let include = card
                .labels()
                .map(|l| l.labels.iter().map(String::as_str).collect())
                .unwrap_or_default();
            let m = Matching { on, names, card, include };
            let node = b as *const BinaryExpr as usize;
            match op {
                T_LAND | T_LOR | T_LUNLESS => Ok(Val::Vector(set_op(ev, node, op, l, r, &m))),
                _ => Ok(Val::Vector(vector_vector(ev, node, op, l, r, &m, return_bool)?)),
            }
        }
        (l, r) => Err(Error::Execution(format!(
            "binary expression must contain only scalar and instant vector types, got {} and {}",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn vector_scalar(
    op: TokenId,
    v: Vec<Elem>,
    s: f64,
    swap: bool,
    return_bool: bool,
) -> Result<Vec<Elem>, Error> {
    let cmp = is_comparison(op);
    let mut out = Vec::with_capacity(v.len());
    for mut e in v {
        let (l, r) = if swap { (s, e.value) } else { (e.value, s) };
        let (mut value, keep) = apply(op, l, r)?;
        if cmp && swap {
            value = r;
        }
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        e.value = value;
        if !cmp || return_bool {
            e.drop_name = true;
        }
        out.push(e);
    }
    Ok(out)
}

fn set_op(ev: &Evaluator, node: usize, op: TokenId, l: Vec<Elem>, r: Vec<Elem>, m: &Matching) -> Vec<Elem> {
    let sig = |e: &Elem| ev.signature(node, &e.labels, |l| m.signature(l));
    match op {
        T_LAND => {
            let rs: HashSet<u64> = r.iter().map(sig).collect();
            l.into_iter().filter(|e| rs.contains(&sig(e))).collect()
        }
        T_LUNLESS => {
            let rs: HashSet<u64> = r.iter().map(sig).collect();
            l.into_iter().filter(|e| !rs.contains(&sig(e))).collect()
        }
        _ => {
            let ls: HashSet<u64> = l.iter().map(sig).collect();
            let mut out = l;
            out.extend(r.into_iter().filter(|e| !ls.contains(&sig(e))));
            out
        }
    }
}

fn vector_vector(
    ev: &Evaluator,
    node: usize,
    op: TokenId,
    lhs: Vec<Elem>,
    rhs: Vec<Elem>,
    m: &Matching,
    return_bool: bool,
) -> Result<Vec<Elem>, Error> {
    let one_to_many = matches!(m.card, VectorMatchCardinality::OneToMany(_));
    let one_to_one = matches!(m.card, VectorMatchCardinality::OneToOne);
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let sig = |e: &Elem| ev.signature(node, &e.labels, |l| m.signature(l));

    let mut one_sigs: FxHashMap<u64, usize> = FxHashMap::default();
    for (i, e) in one.iter().enumerate() {
        let s = sig(e);
        if let Some(&j) = one_sigs.get(&s) {
            let side = if one_to_many { "left" } else { "right" };
            let mut pair = [format_labels(&one[j].labels), format_labels(&e.labels)];
            pair.sort();
            return Err(Error::Execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                format_labels(&m.matched_labels(&e.labels)),
                pair[0],
                pair[1]
            )));
        }
        one_sigs.insert(s, i);
    }

    let cmp = is_comparison(op);
    let reuse_labels = one_to_one && !m.on && m.names.is_empty();
    let mut matched: HashMap<u64, HashSet<u64>> = HashMap::new();
    let mut out = Vec::new();
    for le in many {
        let s = sig(&le);
        let Some(&ri) = one_sigs.get(&s) else { continue };
        let re = &one[ri];
        let (fl, fr) = if one_to_many { (re.value, le.value) } else { (le.value, re.value) };
        let labels = if reuse_labels {
            le.labels.clone()
        } else {
            result_labels(ev, node, &le.labels, &re.labels, m)
        };
        // Matching errors count even for pairs a comparison then filters out.
        if one_to_one {
            if matched.insert(s, HashSet::new()).is_some() {
                return Err(Error::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                ));
            }
        } else {
            let mut h = FxHasher::default();
            labels.hash(&mut h);
            if !matched.entry(s).or_default().insert(h.finish()) {
                return Err(Error::Execution(
                    "multiple matches for labels: grouping labels must ensure unique matches".into(),
                ));
            }
        }
        let (mut value, keep) = apply(op, fl, fr)?;
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let drop_name = le.drop_name || !cmp || return_bool;
        out.push(Elem { labels, value, drop_name });
    }
    Ok(out)
}

/// The labels of a matched pair's result (Prometheus's `resultMetric`), cached per pair.
fn result_labels(
    ev: &Evaluator,
    node: usize,
    many: &Arc<Labels>,
    one: &Arc<Labels>,
    m: &Matching,
) -> Arc<Labels> {
    ev.pair_labels(node, many, one, || {
        let mut l: Labels = (**many).clone();
        if matches!(m.card, VectorMatchCardinality::OneToOne) {
            if m.on {
                l.retain(|k, _| m.names.contains(&k.as_str()));
            } else {
                l.retain(|k, _| !m.names.contains(&k.as_str()));
            }
        }
        for n in &m.include {
            match one.get(*n) {
                Some(v) if !v.is_empty() => {
                    l.insert(n.to_string(), v.clone());
                }
                _ => {
                    l.remove(*n);
                }
            }
        }
        l
    })
}
