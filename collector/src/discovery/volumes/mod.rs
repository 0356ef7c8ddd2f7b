//! Pod volume identity: which pod spec volume (and PersistentVolumeClaim) each volume directory under `<kubelet root>/pods/<uid>/volumes/` is, and the API server claim lookup behind it.
//!
//! The kubelet reports a volume under its pod spec name (`spec.volumes[].name`) and adds a
//! `pvcRef` for a `persistentVolumeClaim` or generic `ephemeral` volume
//! (pkg/kubelet/server/stats/volume_stat_calculator.go). Most plugins name the directory after
//! the spec volume, but a PersistentVolume's directory is named after the PV
//! (`kubernetes.io~csi/pvc-3f2a…/mount`). The PV of a directory is matched to a claim by, in order:
//! the spec name; the claim's bound volume (`spec.volumeName`) from the API server when the
//! lookup is on (for CSI the PV name is `specVolID` of the `vol_data.json` the kubelet writes
//! beside `mount/`); elimination (one claim and one directory left). Otherwise the directory
//! name stays and there is no `pvcRef`.

use crate::discovery::metadata::PodMeta;
use crate::proc::fs::VolumeDir;
use crate::summary::PvcReference;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The CSI plugin's directory under `volumes/`.
pub const CSI_PLUGIN: &str = "kubernetes.io~csi";

/// Errors of volume identity; none of them stops collection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `vol_data.json` exists but cannot be read.
    #[error("cannot read CSI volume data {path}: {source}")]
    VolDataRead {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `vol_data.json` is not the kubelet's JSON object with a `specVolID`.
    #[error("malformed CSI volume data {path}: {message}")]
    VolData { path: PathBuf, message: String },
    /// A directory that matches no volume of the known pod spec.
    #[error("pod {namespace}/{pod}: volume directory {plugin}/{dir} matches no volume of the pod spec (claims without a known volume: {claims:?}); reported under its directory name without pvcRef")]
    Unmapped {
        namespace: String,
        pod: String,
        plugin: String,
        dir: String,
        claims: Vec<String>,
    },
    /// The API server could not be reached or answered something unusable (`path`: the
    /// request's path on the API server).
    #[error("GET {path}: {message}")]
    Lookup { path: String, message: String },
}

impl Error {
    /// The `kind` label of `vigil_collector_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::VolDataRead { .. } | Error::VolData { .. } => "volume_data",
            Error::Unmapped { .. } => "volume_unmapped",
            Error::Lookup { .. } => "pvc_lookup",
        }
    }
}

/// What the kubelet's CSI plugin writes to `<volume dir>/vol_data.json` (pkg/volume/csi,
/// `volDataKey`): `specVolID` is the PV name for a persistent volume, the spec volume name for an
/// inline (`volumeLifecycleMode: Ephemeral`) one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VolData {
    #[serde(rename = "specVolID")]
    pub spec_vol_id: String,
    #[serde(rename = "driverName", default)]
    pub driver_name: String,
    #[serde(rename = "volumeHandle", default)]
    pub volume_handle: String,
    #[serde(rename = "volumeLifecycleMode", default)]
    pub volume_lifecycle_mode: String,
}

impl VolData {
    /// A PersistentVolume (not an inline CSI volume of the pod spec).
    pub fn persistent(&self) -> bool {
        self.volume_lifecycle_mode != "Ephemeral"
    }
}

/// Reads `<dir>/vol_data.json`; `Ok(None)` when there is none.
pub fn read_vol_data(dir: &Path) -> Result<Option<VolData>, Error> {
    let path = dir.join("vol_data.json");
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::VolDataRead { path, source }),
    };
    let data: VolData = serde_json::from_slice(&text).map_err(|e| Error::VolData {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if data.spec_vol_id.is_empty() {
        return Err(Error::VolData {
            path,
            message: "empty specVolID".into(),
        });
    }
    Ok(Some(data))
}

/// The name and claim a volume directory is reported under.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VolumeIdentity {
    /// The pod spec volume name (the directory name when unknown).
    pub name: String,
    pub pvc_ref: Option<PvcReference>,
}

/// Names the volume directories of one pod (`volumes` is `<kubelet root>/pods/<uid>/volumes`),
/// in the order of `dirs`. Without the pod spec (no `--kubelet-url`) every directory keeps its
/// name and nothing is an error.
pub fn identify(
    volumes: &Path,
    dirs: &[VolumeDir],
    pod: Option<&PodMeta>,
) -> (Vec<VolumeIdentity>, Vec<Error>) {
    let mut out: Vec<VolumeIdentity> = dirs
        .iter()
        .map(|d| VolumeIdentity {
            name: d.name.clone(),
            pvc_ref: None,
        })
        .collect();
    let mut errors = Vec::new();
    let Some(pod) = pod.filter(|p| !p.volumes.is_empty()) else {
        return (out, errors);
    };
    let spec = &pod.volumes;
    let mut spec_used = vec![false; spec.len()];
    let mut done = vec![false; dirs.len()];
    // Directory `i` is spec volume `s`.
    let take =
        |i: usize, s: usize, out: &mut [VolumeIdentity], used: &mut [bool], done: &mut [bool]| {
            used[s] = true;
            done[i] = true;
            out[i] = VolumeIdentity {
                name: spec[s].name.clone(),
                pvc_ref: spec[s].claim.as_ref().map(|c| PvcReference {
                    name: c.clone(),
                    namespace: pod.namespace.clone(),
                }),
            };
        };
    // The PV name of each directory (CSI: from vol_data.json) and whether it is surely a PV.
    let mut pv: Vec<(String, bool)> = Vec::with_capacity(dirs.len());
    for d in dirs {
        let mut entry = (d.name.clone(), false);
        if d.plugin == CSI_PLUGIN {
            match read_vol_data(&volumes.join(&d.plugin).join(&d.name)) {
                Ok(Some(v)) => entry = (v.spec_vol_id.clone(), v.persistent()),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        pv.push(entry);
    }
    // 1. The directory is named after the spec volume (every plugin but a PV's), under the
    //    plugin of the volume's kind when that is known: a PV directory that happens to carry a
    //    configMap's or an emptyDir's name is not that volume.
    for (i, d) in dirs.iter().enumerate() {
        if pv[i].1 {
            continue;
        }
        if let Some(s) = (0..spec.len()).find(|&s| {
            !spec_used[s] && spec[s].name == d.name && spec[s].plugin.is_none_or(|p| p == d.plugin)
        }) {
            take(i, s, &mut out, &mut spec_used, &mut done);
        }
    }
    // 2. The PV a claim is bound to (API server lookup).
    for i in 0..dirs.len() {
        if done[i] {
            continue;
        }
        let found = (0..spec.len()).find(|&s| {
            !spec_used[s]
                && spec[s].claim.is_some()
                && spec[s].bound_volume.as_deref() == Some(pv[i].0.as_str())
        });
        if let Some(s) = found {
            take(i, s, &mut out, &mut spec_used, &mut done);
        }
    }
    // 3. Elimination: one claim volume and one directory left.
    let left_dirs: Vec<usize> = (0..dirs.len()).filter(|&i| !done[i]).collect();
    let left_claims: Vec<usize> = (0..spec.len())
        .filter(|&s| !spec_used[s] && spec[s].claim.is_some())
        .collect();
    if let ([i], [s]) = (left_dirs.as_slice(), left_claims.as_slice()) {
        take(*i, *s, &mut out, &mut spec_used, &mut done);
    }
    for (i, d) in dirs.iter().enumerate() {
        if !done[i] {
            errors.push(Error::Unmapped {
                namespace: pod.namespace.clone(),
                pod: pod.name.clone(),
                plugin: d.plugin.clone(),
                dir: d.name.clone(),
                claims: left_claims
                    .iter()
                    .filter(|&&s| !spec_used[s])
                    .filter_map(|&s| spec[s].claim.clone())
                    .collect(),
            });
        }
    }
    (out, errors)
}

mod claims;
pub use claims::{Answer, ClaimCache, ClaimLookup, BOUND_TTL, REQUEST_TIMEOUT, RETRY};

#[cfg(test)]
mod tests;
