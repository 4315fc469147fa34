//! Build script: with feature `dpdk`, find libdpdk through pkg-config, compile the inline shim
//! and generate bindings; without it, do nothing.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "dpdk")]
    dpdk::generate();
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use std::path::PathBuf;

    pub fn generate() {
        println!("cargo:rerun-if-changed=shim/shim.h");
        println!("cargo:rerun-if-changed=shim/shim.c");
        let lib = pkg_config::Config::new()
            .atleast_version("22.11")
            .probe("libdpdk")
            .expect("feature `dpdk` needs DPDK 22.11 or later: apt-get install libdpdk-dev pkg-config");
        // The flags DPDK was built with (its target CPU and `rte_config.h` among them): its
        // inline functions must be compiled as the library was, and not for this machine's
        // CPU, or the binary would not run on another machine the library runs on.
        let cflags = dpdk_cflags();
        let mut shim = cc::Build::new();
        shim.file("shim/shim.c");
        for flag in &cflags {
            shim.flag(flag);
        }
        for path in &lib.include_paths {
            shim.include(path);
        }
        shim.compile("dve_dpdk_shim");
        // `rte_eth_from_rings` lives in the ring PMD, which pkg-config's list leaves out (EAL
        // loads drivers as plugins); linking it directly is harmless where EAL also loads it,
        // since both name the same file and the loader maps it once.
        println!("cargo:rustc-link-lib=dylib=rte_net_ring");
        let mut builder = bindgen::Builder::default()
            .header("shim/shim.h")
            // What the DPDK port uses (EAL, ethdev, mbufs and mempools; rings and the ring
            // PMD's `rte_eth_from_rings` for test cables), and the types they reach. Allowing every `rte_` type would pull in rte_flow's protocol headers,
            // some of which bindgen cannot express (packed structs holding aligned ones).
            .allowlist_function(
                "rte_eal_.*|rte_strerror|rte_socket_id|rte_eth_.*|rte_pktmbuf_.*|rte_mempool_.*|rte_ring_create|dve_shim_.*",
            )
            .allowlist_type("rte_eth_.*|rte_mbuf|rte_mempool|rte_ether_addr")
            .allowlist_var("RTE_.*")
            .derive_debug(true)
            .derive_default(true)
            .layout_tests(false)
            .clang_args(&cflags);
        for path in &lib.include_paths {
            builder = builder.clang_arg(format!("-I{}", path.display()));
        }
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        builder
            .generate()
            .expect("bindgen failed on the DPDK headers")
            .write_to_file(out.join("dpdk_bindings.rs"))
            .expect("write DPDK bindings");
    }

    /// `pkg-config --cflags libdpdk`, split into flags.
    fn dpdk_cflags() -> Vec<String> {
        let program = std::env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_string());
        let output = std::process::Command::new(program)
            .args(["--cflags", "libdpdk"])
            .output()
            .expect("run pkg-config --cflags libdpdk");
        assert!(output.status.success(), "pkg-config --cflags libdpdk failed: {output:?}");
        String::from_utf8_lossy(&output.stdout).split_whitespace().map(str::to_string).collect()
    }
}
