//! Heapster's metric and label names (heapster metrics/core/metrics.go, labels.go).

pub const UPTIME: &str = "uptime";
pub const CPU_USAGE: &str = "cpu/usage";
pub const CPU_USAGE_RATE: &str = "cpu/usage_rate";
pub const CPU_REQUEST: &str = "cpu/request";
pub const CPU_LIMIT: &str = "cpu/limit";
pub const CPU_NODE_CAPACITY: &str = "cpu/node_capacity";
pub const CPU_NODE_ALLOCATABLE: &str = "cpu/node_allocatable";
pub const CPU_NODE_UTILIZATION: &str = "cpu/node_utilization";
pub const CPU_NODE_RESERVATION: &str = "cpu/node_reservation";
pub const MEMORY_USAGE: &str = "memory/usage";
pub const MEMORY_WORKING_SET: &str = "memory/working_set";
pub const MEMORY_RSS: &str = "memory/rss";
pub const MEMORY_PAGE_FAULTS: &str = "memory/page_faults";
pub const MEMORY_MAJOR_PAGE_FAULTS: &str = "memory/major_page_faults";
pub const MEMORY_PAGE_FAULTS_RATE: &str = "memory/page_faults_rate";
pub const MEMORY_MAJOR_PAGE_FAULTS_RATE: &str = "memory/major_page_faults_rate";
pub const MEMORY_REQUEST: &str = "memory/request";
pub const MEMORY_LIMIT: &str = "memory/limit";
pub const MEMORY_NODE_CAPACITY: &str = "memory/node_capacity";
pub const MEMORY_NODE_ALLOCATABLE: &str = "memory/node_allocatable";
pub const MEMORY_NODE_UTILIZATION: &str = "memory/node_utilization";
pub const MEMORY_NODE_RESERVATION: &str = "memory/node_reservation";
pub const EPHEMERAL_STORAGE_USAGE: &str = "ephemeral_storage/usage";
pub const EPHEMERAL_STORAGE_NODE_CAPACITY: &str = "ephemeral_storage/node_capacity";
pub const EPHEMERAL_STORAGE_NODE_ALLOCATABLE: &str = "ephemeral_storage/node_allocatable";
pub const EPHEMERAL_STORAGE_NODE_UTILIZATION: &str = "ephemeral_storage/node_utilization";
pub const NETWORK_RX: &str = "network/rx";
pub const NETWORK_RX_ERRORS: &str = "network/rx_errors";
pub const NETWORK_TX: &str = "network/tx";
pub const NETWORK_TX_ERRORS: &str = "network/tx_errors";
pub const NETWORK_RX_RATE: &str = "network/rx_rate";
pub const NETWORK_RX_ERRORS_RATE: &str = "network/rx_errors_rate";
pub const NETWORK_TX_RATE: &str = "network/tx_rate";
pub const NETWORK_TX_ERRORS_RATE: &str = "network/tx_errors_rate";
pub const DISK_IO_READ_BYTES: &str = "disk/io_read_bytes";
pub const DISK_IO_WRITE_BYTES: &str = "disk/io_write_bytes";
pub const DISK_IO_READ_BYTES_RATE: &str = "disk/io_read_bytes_rate";
pub const DISK_IO_WRITE_BYTES_RATE: &str = "disk/io_write_bytes_rate";
pub const FILESYSTEM_USAGE: &str = "filesystem/usage";
pub const FILESYSTEM_LIMIT: &str = "filesystem/limit";
pub const FILESYSTEM_AVAILABLE: &str = "filesystem/available";
pub const FILESYSTEM_INODES: &str = "filesystem/inodes";
pub const FILESYSTEM_INODES_FREE: &str = "filesystem/inodes_free";
pub const ACCELERATOR_MEMORY_TOTAL: &str = "accelerator/memory_total";
pub const ACCELERATOR_MEMORY_USED: &str = "accelerator/memory_used";
pub const ACCELERATOR_DUTY_CYCLE: &str = "accelerator/duty_cycle";
pub const RESTART_COUNT: &str = "restart_count";

pub const LABEL_NODENAME: &str = "nodename";
pub const LABEL_HOSTNAME: &str = "hostname";
pub const LABEL_HOST_ID: &str = "host_id";
pub const LABEL_CONTAINER_NAME: &str = "container_name";
pub const LABEL_CONTAINER_BASE_IMAGE: &str = "container_base_image";
pub const LABEL_POD_NAME: &str = "pod_name";
pub const LABEL_POD_ID: &str = "pod_id";
pub const LABEL_NAMESPACE_NAME: &str = "namespace_name";
pub const LABEL_NAMESPACE_ID: &str = "namespace_id";
pub const LABEL_LABELS: &str = "labels";
pub const LABEL_TYPE: &str = "type";
pub const LABEL_RESOURCE_ID: &str = "resource_id";

/// Cumulative metrics and the rate Heapster derives from each. `true` = cpu/usage_rate's
/// int64 millicores; otherwise a per-second float.
pub const RATES: [(&str, &str, bool); 7] = [
    (CPU_USAGE, CPU_USAGE_RATE, true),
    (MEMORY_PAGE_FAULTS, MEMORY_PAGE_FAULTS_RATE, false),
    (
        MEMORY_MAJOR_PAGE_FAULTS,
        MEMORY_MAJOR_PAGE_FAULTS_RATE,
        false,
    ),
    (NETWORK_RX, NETWORK_RX_RATE, false),
    (NETWORK_RX_ERRORS, NETWORK_RX_ERRORS_RATE, false),
    (NETWORK_TX, NETWORK_TX_RATE, false),
    (NETWORK_TX_ERRORS, NETWORK_TX_ERRORS_RATE, false),
];

/// Labeled cumulative metrics and their per-second rates (per `resource_id`).
pub const LABELED_RATES: [(&str, &str); 2] = [
    (DISK_IO_READ_BYTES, DISK_IO_READ_BYTES_RATE),
    (DISK_IO_WRITE_BYTES, DISK_IO_WRITE_BYTES_RATE),
];

/// Heapster's cumulative metrics (type `cumulative`): typed `counter` by the sinks (and left out by
/// `disable_counter_metrics`), named `*_total` in Prometheus, exported with start = creation time.
pub const CUMULATIVE: [&str; 11] = [
    UPTIME,
    CPU_USAGE,
    MEMORY_PAGE_FAULTS,
    MEMORY_MAJOR_PAGE_FAULTS,
    NETWORK_RX,
    NETWORK_RX_ERRORS,
    NETWORK_TX,
    NETWORK_TX_ERRORS,
    DISK_IO_READ_BYTES,
    DISK_IO_WRITE_BYTES,
    RESTART_COUNT,
];

/// Whether a Heapster metric is cumulative.
pub fn is_cumulative(name: &str) -> bool {
    CUMULATIVE.contains(&name)
}

/// Whether the pod aggregator leaves a container metric out of the pod's sum: Heapster skips the
/// cumulative metrics of its standard set, but sums `restart_count` (an additional metric, read
/// from the pod status) into the pod.
pub fn skipped_by_pod_sum(name: &str) -> bool {
    is_cumulative(name) && name != RESTART_COUNT
}

/// What namespaces, nodes and the cluster sum (heapster's namespace/cluster aggregators).
pub const AGGREGATED: [&str; 6] = [
    CPU_USAGE_RATE,
    MEMORY_USAGE,
    CPU_REQUEST,
    CPU_LIMIT,
    MEMORY_REQUEST,
    MEMORY_LIMIT,
];

/// Heapster's old model-API names.
pub fn canonical(name: &str) -> &str {
    match name {
        "cpu-usage" => CPU_USAGE_RATE,
        "memory-usage" => MEMORY_USAGE,
        "memory-working" => MEMORY_WORKING_SET,
        "cpu-limit" => CPU_LIMIT,
        "memory-limit" => MEMORY_LIMIT,
        other => other,
    }
}

/// Every metric name the aggregator can produce (custom/* aside).
pub const ALL: [&str; 48] = [
    UPTIME,
    CPU_USAGE,
    CPU_USAGE_RATE,
    CPU_REQUEST,
    CPU_LIMIT,
    CPU_NODE_CAPACITY,
    CPU_NODE_ALLOCATABLE,
    CPU_NODE_UTILIZATION,
    CPU_NODE_RESERVATION,
    MEMORY_USAGE,
    MEMORY_WORKING_SET,
    MEMORY_RSS,
    MEMORY_PAGE_FAULTS,
    MEMORY_MAJOR_PAGE_FAULTS,
    MEMORY_PAGE_FAULTS_RATE,
    MEMORY_MAJOR_PAGE_FAULTS_RATE,
    MEMORY_REQUEST,
    MEMORY_LIMIT,
    MEMORY_NODE_CAPACITY,
    MEMORY_NODE_ALLOCATABLE,
    MEMORY_NODE_UTILIZATION,
    MEMORY_NODE_RESERVATION,
    EPHEMERAL_STORAGE_USAGE,
    EPHEMERAL_STORAGE_NODE_CAPACITY,
    EPHEMERAL_STORAGE_NODE_ALLOCATABLE,
    EPHEMERAL_STORAGE_NODE_UTILIZATION,
    NETWORK_RX,
    NETWORK_RX_ERRORS,
    NETWORK_TX,
    NETWORK_TX_ERRORS,
    NETWORK_RX_RATE,
    NETWORK_RX_ERRORS_RATE,
    NETWORK_TX_RATE,
    NETWORK_TX_ERRORS_RATE,
    DISK_IO_READ_BYTES,
    DISK_IO_WRITE_BYTES,
    DISK_IO_READ_BYTES_RATE,
    DISK_IO_WRITE_BYTES_RATE,
    FILESYSTEM_USAGE,
    FILESYSTEM_LIMIT,
    FILESYSTEM_AVAILABLE,
    FILESYSTEM_INODES,
    FILESYSTEM_INODES_FREE,
    ACCELERATOR_MEMORY_TOTAL,
    ACCELERATOR_MEMORY_USED,
    ACCELERATOR_DUTY_CYCLE,
    RESTART_COUNT,
    "cpu/load",
];

/// Whether the model API knows a metric name (after old-name translation).
pub fn is_known(name: &str) -> bool {
    ALL.contains(&name) || name.starts_with("custom/") || name == "memory/cache"
}
