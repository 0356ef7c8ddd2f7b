//! The routing tree (Alertmanager's `dispatch.Route`): inherited options, matching with
//! `continue`, group labels and the route key that group keys start with.

use std::time::Duration;

use super::config::{build_matchers, RouteConfig};
use super::labels::{matches_all, matchers_string, sort_matchers, Labels, Matcher};

/// Labels a route groups by.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupBy {
    /// `group_by: ['...']`: every label.
    All,
    /// These labels (none = one group for the route).
    Labels(Vec<String>),
}

/// One route with its options resolved (inherited from the parent where not set).
#[derive(Debug, Clone)]
pub struct Route {
    pub receiver: String,
    pub group_by: GroupBy,
    pub matchers: Vec<Matcher>,
    pub continue_: bool,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    /// `parent key + "/" + matchers`: the first part of group keys.
    pub key: String,
    /// Indexes of the children in the tree.
    pub children: Vec<usize>,
}

/// The whole tree, flattened; index 0 is the root.
#[derive(Debug, Clone)]
pub struct RouteTree {
    pub routes: Vec<Route>,
}

impl RouteTree {
    /// Builds the tree from a validated configuration's root route.
    pub fn new(root: &RouteConfig) -> Result<RouteTree, String> {
        let defaults = Route {
            receiver: String::new(),
            group_by: GroupBy::Labels(Vec::new()),
            matchers: Vec::new(),
            continue_: false,
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
            key: String::new(),
            children: Vec::new(),
        };
        let mut tree = RouteTree { routes: Vec::new() };
        tree.add(root, &defaults, None)?;
        Ok(tree)
    }

    fn add(&mut self, cfg: &RouteConfig, parent: &Route, parent_key: Option<&str>) -> Result<usize, String> {
        let mut matchers = build_matchers(&cfg.match_eq, &cfg.match_re, &cfg.matchers)?;
        sort_matchers(&mut matchers);
        let key = match parent_key {
            Some(p) => format!("{p}/{}", matchers_string(&matchers)),
            None => matchers_string(&matchers),
        };
        let group_by = match &cfg.group_by {
            None => parent.group_by.clone(),
            Some(l) if l.iter().any(|x| x == "...") => GroupBy::All,
            Some(l) => GroupBy::Labels(l.clone()),
        };
        let route = Route {
            receiver: cfg
                .receiver
                .clone()
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| parent.receiver.clone()),
            group_by,
            matchers,
            continue_: cfg.continue_,
            group_wait: cfg.group_wait.map_or(parent.group_wait, |d| d.0),
            group_interval: cfg.group_interval.map_or(parent.group_interval, |d| d.0),
            repeat_interval: cfg.repeat_interval.map_or(parent.repeat_interval, |d| d.0),
            key,
            children: Vec::new(),
        };
        let idx = self.routes.len();
        self.routes.push(route.clone());
        let mut children = Vec::new();
        for c in &cfg.routes {
            children.push(self.add(c, &route, Some(&route.key))?);
        }
        self.routes[idx].children = children;
        Ok(idx)
    }

    /// The routes an alert is dispatched to (`Route.Match`): leaf-most matches, first matching
    /// child wins unless it has `continue`.
    pub fn matching(&self, labels: &Labels) -> Vec<usize> {
        self.match_from(0, labels)
    }

    fn match_from(&self, idx: usize, labels: &Labels) -> Vec<usize> {
        let r = &self.routes[idx];
        if !matches_all(&r.matchers, labels) {
            return Vec::new();
        }
        let mut all = Vec::new();
        for &c in &r.children {
            let matches = self.match_from(c, labels);
            let matched = !matches.is_empty();
            all.extend(matches);
            if matched && !self.routes[c].continue_ {
                break;
            }
        }
        if all.is_empty() {
            all.push(idx);
        }
        all
    }
}

impl Route {
    /// The alert's labels this route groups by.
    pub fn group_labels(&self, labels: &Labels) -> Labels {
        match &self.group_by {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => names
                .iter()
                .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::config::NotifyConfig;

    fn ls(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn routes_match_and_inherit_like_alertmanager() {
        let cfg = NotifyConfig::parse(
            r#"
route:
  receiver: default
  group_by: [alertname]
  group_wait: 1s
  routes:
    - matchers: ['severity="page"']
      receiver: pager
      continue: true
    - match: {team: db}
      receiver: db
      group_by: ['...']
    - match_re: {team: "web|api"}
      receiver: web
receivers: [{name: default}, {name: pager}, {name: db}, {name: web}]
"#,
        )
        .unwrap();
        let tree = RouteTree::new(cfg.root()).unwrap();
        let r = |l: &[(&str, &str)]| tree.matching(&ls(l));
        assert_eq!(r(&[("alertname", "X")]), vec![0]);
        assert_eq!(r(&[("severity", "page"), ("team", "db")]), vec![1, 2]);
        assert_eq!(r(&[("severity", "page")]), vec![1]);
        assert_eq!(r(&[("team", "api")]), vec![3]);
        assert_eq!(tree.routes[1].key, r#"{}/{severity="page"}"#);
        assert_eq!(tree.routes[1].group_wait, Duration::from_secs(1));
        assert_eq!(tree.routes[1].group_by, GroupBy::Labels(vec!["alertname".into()]));
        assert_eq!(tree.routes[2].group_by, GroupBy::All);
        assert_eq!(tree.routes[0].key, "{}");
    }
}
