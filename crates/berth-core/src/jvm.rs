//! JVM sizing for small containers: heap, metaspace, code cache, direct memory and thread
//! stacks from the container's memory limit, so that a servlet application runs in
//! 256 MiB.
//!
//! ```text
//!  memory limit ─┬─ headroom      10 % (≥ 16 MiB): malloc, GC structures, the JVM itself
//!                ├─ code cache    limit / 8        (24 … 240 MiB)
//!                ├─ metaspace     limit / 4        (64 … 512 MiB)
//!                ├─ direct memory limit / 32       (8 … 128 MiB)
//!                ├─ thread stacks 60 threads × 512 KiB (1 MiB above 1 GiB)
//!                └─ heap          the rest         (≥ 16 MiB)
//! ```
//!
//! Paketo's calculator reserves a fixed 250 threads × 1 MiB and a 240 MiB code cache before
//! any heap, about 500 MB; these shares scale down instead (Berth's Tomcat runs at most 50
//! request threads). The options go into `JAVA_TOOL_OPTIONS` of the application's
//! replicas (unless the application sets that variable itself); JVM options on the
//! command line (the java builder's `jvmOptions`) come after it and win.

use crate::objects::{ApplicationSpec, Builder};

const MIB: u64 = 1 << 20;
/// Threads budgeted for: Berth's Tomcat's 50 request threads and the JVM's own.
pub const THREADS: u64 = 60;
/// The smallest heap Berth gives; a limit that leaves less is too small for a JVM.
pub const MIN_HEAP: u64 = 16 * MIB;

/// The sizes chosen for one memory limit, and the JVM options that set them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JvmSizing {
    /// The container's memory limit, if it has one.
    pub memory_bytes: Option<u64>,
    /// `-Xmx`.
    pub heap: Option<u64>,
    /// `-XX:MaxMetaspaceSize`.
    pub metaspace: Option<u64>,
    /// `-XX:ReservedCodeCacheSize`.
    pub code_cache: Option<u64>,
    /// `-XX:MaxDirectMemorySize`.
    pub direct: Option<u64>,
    /// `-Xss`.
    pub thread_stack: Option<u64>,
    /// The JVM options, in order.
    pub options: Vec<String>,
    /// Said when the limit is too small for these shares (the heap is then the minimum).
    pub warning: Option<String>,
}

impl JvmSizing {
    /// The options as one `JAVA_TOOL_OPTIONS` value.
    #[must_use]
    pub fn java_tool_options(&self) -> String {
        self.options.join(" ")
    }
}

fn mib(bytes: u64) -> String {
    format!("{}m", bytes / MIB)
}

/// The sizes for a container limited to `memory_bytes` (`None`: no limit, the JVM takes
/// 75 % of what it sees for its heap) whose replicas get `grace_seconds` from SIGTERM to
/// SIGKILL (Berth's Tomcat waits for requests in flight up to 2 s less than that).
#[must_use]
pub fn size(memory_bytes: Option<u64>, grace_seconds: u32) -> JvmSizing {
    let graceful = format!(
        "-Dberth.graceful.stop.ms={}",
        u64::from(grace_seconds.saturating_sub(2)) * 1000
    );
    let Some(limit) = memory_bytes.filter(|m| *m > 0) else {
        return JvmSizing {
            memory_bytes: None,
            heap: None,
            metaspace: None,
            code_cache: None,
            direct: None,
            thread_stack: None,
            options: vec![
                "-XX:MaxRAMPercentage=75.0".to_owned(),
                "-XX:+ExitOnOutOfMemoryError".to_owned(),
                graceful,
            ],
            warning: None,
        };
    };
    let round = |bytes: u64| bytes / MIB * MIB;
    let headroom = (limit / 10).max(16 * MIB);
    let code_cache = round((limit / 8).clamp(24 * MIB, 240 * MIB));
    let metaspace = round((limit / 4).clamp(64 * MIB, 512 * MIB));
    let direct = round((limit / 32).clamp(8 * MIB, 128 * MIB));
    let thread_stack = if limit > 1024 * MIB { MIB } else { MIB / 2 };
    let fixed = headroom + code_cache + metaspace + direct + THREADS * thread_stack;
    let rest = round(limit.saturating_sub(fixed));
    let (heap, warning) = if rest < MIN_HEAP {
        (
            MIN_HEAP,
            Some(format!(
                "a memory limit of {} MiB leaves less than {} MiB for the heap; give a Java application at least 192Mi",
                limit / MIB,
                MIN_HEAP / MIB
            )),
        )
    } else {
        (rest, None)
    };
    let mut options = vec![
        format!("-Xmx{}", mib(heap)),
        format!("-XX:MaxMetaspaceSize={}", mib(metaspace)),
        format!("-XX:ReservedCodeCacheSize={}", mib(code_cache)),
        format!("-XX:MaxDirectMemorySize={}", mib(direct)),
        format!("-Xss{}k", thread_stack / 1024),
    ];
    // One collector thread and no region tables: the serial collector is the JVM's own
    // choice below 2 CPUs or 1792 MB; said outright so that it does not depend on the node.
    if limit <= 1024 * MIB {
        options.push("-XX:+UseSerialGC".to_owned());
    }
    options.push("-XX:+ExitOnOutOfMemoryError".to_owned());
    options.push(graceful);
    JvmSizing {
        memory_bytes: Some(limit),
        heap: Some(heap),
        metaspace: Some(metaspace),
        code_cache: Some(code_cache),
        direct: Some(direct),
        thread_stack: Some(thread_stack),
        options,
        warning,
    }
}

/// Whether the application is a Java one Berth sizes: built by the `java` builder.
#[must_use]
pub fn is_java(spec: &ApplicationSpec) -> bool {
    spec.source
        .as_ref()
        .is_some_and(|s| matches!(s.builder, Builder::Java(_)))
}

/// The sizing of `spec`'s replicas: `None` unless it is a Java application that does not
/// set `JAVA_TOOL_OPTIONS` itself.
#[must_use]
pub fn sizing_of(spec: &ApplicationSpec) -> Option<JvmSizing> {
    if !is_java(spec) || spec.env.contains_key("JAVA_TOOL_OPTIONS") {
        return None;
    }
    let memory = spec
        .resources
        .memory
        .as_deref()
        .and_then(crate::quantity::parse_memory);
    Some(size(memory, spec.termination_grace_seconds()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_servlet_app_fits_256_mib_with_a_real_heap() {
        let s = size(Some(256 * MIB), 30);
        assert_eq!(
            s.options,
            [
                "-Xmx96m",
                "-XX:MaxMetaspaceSize=64m",
                "-XX:ReservedCodeCacheSize=32m",
                "-XX:MaxDirectMemorySize=8m",
                "-Xss512k",
                "-XX:+UseSerialGC",
                "-XX:+ExitOnOutOfMemoryError",
                "-Dberth.graceful.stop.ms=28000"
            ]
        );
        assert!(s.warning.is_none());
    }

    #[test]
    fn every_limit_adds_up_to_at_most_the_limit() {
        for m in [192, 256, 384, 512, 768, 1024, 1536, 2048, 4096, 16384] {
            let limit = m * MIB;
            let s = size(Some(limit), 30);
            let total = s.heap.unwrap()
                + s.metaspace.unwrap()
                + s.code_cache.unwrap()
                + s.direct.unwrap()
                + THREADS * s.thread_stack.unwrap();
            assert!(total <= limit, "{m} MiB: {total}");
            if m >= 256 {
                assert!(s.heap.unwrap() * 100 / limit >= 35, "{m} MiB: heap {:?}", s.heap);
            }
            assert!(s.warning.is_none(), "{m} MiB");
        }
        let big = size(Some(4096 * MIB), 30);
        assert_eq!(big.code_cache, Some(240 * MIB));
        assert!(!big.options.iter().any(|o| o.contains("SerialGC")));
    }

    #[test]
    fn too_small_a_limit_is_said_and_no_limit_takes_a_share() {
        let s = size(Some(128 * MIB), 30);
        assert_eq!(s.heap, Some(MIN_HEAP));
        assert!(s.warning.unwrap().contains("at least 192Mi"));
        let none = size(None, 10);
        assert_eq!(
            none.java_tool_options(),
            "-XX:MaxRAMPercentage=75.0 -XX:+ExitOnOutOfMemoryError -Dberth.graceful.stop.ms=8000"
        );
    }

    #[test]
    fn only_java_apps_without_their_own_options_are_sized() {
        let spec = |json: serde_json::Value| -> ApplicationSpec { serde_json::from_value(json).unwrap() };
        let java = spec(
            serde_json::json!({"image": "r/web", "resources": {"memory": "256Mi"},
            "terminationGraceSeconds": 12,
            "source": {"git": "file:///r", "builder": {"java": {"war": "a.war"}}}}),
        );
        let s = sizing_of(&java).unwrap();
        assert_eq!(s.heap, Some(96 * MIB));
        assert!(s.java_tool_options().ends_with("-Dberth.graceful.stop.ms=10000"));
        let mut own = java.clone();
        own.env.insert("JAVA_TOOL_OPTIONS".into(), "-Xmx50m".into());
        assert_eq!(sizing_of(&own), None);
        let other = spec(serde_json::json!({"image": "r/web", "resources": {"memory": "256Mi"}}));
        assert_eq!(sizing_of(&other), None);
    }
}
