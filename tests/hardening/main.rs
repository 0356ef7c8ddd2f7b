//! Robustness of the `vigil` binary as a whole: bad config and flags, slow and excess connections, authentication, malformed scrapes and node-problem input (proptest), allocator settings, the deploy manifests' flags, and `vigil up`'s problem detector.

#[path = "../support/mod.rs"]
mod support;

mod allocator_env;
mod auth;
mod config;
mod connections;
mod deploy_manifests;
mod problems;
mod proptest;
mod scrape;
mod up_problems;
