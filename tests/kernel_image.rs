//! The CUDA kernel image `build.rs` embedded: every entry point is there, and the
//! compiled PTX keeps the numeric rules (no FMA contraction, no flush-to-zero, no
//! approximate division). Runs without a GPU.

use std::collections::BTreeSet;

use tutti::gpu::{self, KernelImageKind};

fn expected() -> BTreeSet<&'static str> {
    gpu::entry_points().iter().map(String::as_str).collect()
}

/// The names of the `.entry` functions of a PTX text.
fn ptx_entries(ptx: &str) -> BTreeSet<&str> {
    ptx.split(".entry ")
        .skip(1)
        .filter_map(|rest| rest.split('(').next())
        .map(str::trim)
        .collect()
}

/// Whether `name` occurs in `text` as a whole identifier, and how often.
fn word_count(text: &str, name: &str) -> usize {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(name)
        .filter(|(i, _)| {
            let before = text[..*i].chars().next_back();
            let after = text[i + name.len()..].chars().next();
            !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
        })
        .count()
}

#[test]
fn compiled_image_has_every_entry_point() {
    let image = gpu::kernel_image();
    eprintln!("tutti kernels: {}", image.how);
    match image.kind {
        KernelImageKind::Fatbin | KernelImageKind::Ptx => {
            let ptx = gpu::kernel_ptx().expect("a compiled build embeds its PTX text");
            assert!(
                ptx.contains(".target sm_80"),
                "the PTX should target compute_80"
            );
            let found = ptx_entries(ptx);
            let want = expected();
            let missing: Vec<_> = want.difference(&found).collect();
            let extra: Vec<_> = found.difference(&want).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "PTX entry points differ from gpu::entry_points(): missing {missing:?}, unexpected {extra:?}"
            );
            eprintln!(
                "found all {} kernel entry points in the PTX ({} bytes, {})",
                found.len(),
                ptx.len(),
                image.compiler
            );
        }
        KernelImageKind::Source => {
            assert!(
                std::env::var("TUTTI_REQUIRE_NVRTC").as_deref() != Ok("1"),
                "TUTTI_REQUIRE_NVRTC=1 but build.rs did not compile the CUDA kernels: {}",
                image.how
            );
            eprintln!(
                "NOTE: the CUDA kernels were not compiled at build time (no nvcc or libnvrtc); \
                 only the embedded source is checked"
            );
        }
        other => panic!("unknown kernel image kind {other:?}"),
    }
}

#[test]
fn compiled_ptx_keeps_ieee_arithmetic() {
    let Some(ptx) = gpu::kernel_ptx() else {
        eprintln!(
            "SKIPPED: no PTX in this build ({})",
            gpu::kernel_image().how
        );
        return;
    };
    // The results must equal the CPU kernels bit for bit: no fused multiply-add, no
    // flushing of subnormals, no approximate division.
    for banned in ["fma.", ".ftz", "div.approx", "div.full", "rcp.approx"] {
        assert!(
            !ptx.contains(banned),
            "the kernels' PTX contains `{banned}`, which breaks bit-exactness with the CPU kernels"
        );
    }
}

#[test]
fn source_declares_and_defines_every_entry_point() {
    let src = gpu::kernel_source();
    // The header's prototypes: exactly the expected set.
    let declared: BTreeSet<&str> = src
        .lines()
        .filter_map(|l| l.strip_prefix("TUTTI_KERNEL "))
        .filter_map(|l| l.split('(').next())
        .map(str::trim)
        .collect();
    assert_eq!(
        declared,
        expected(),
        "kernels/tutti_kernels.h declares other entry points than gpu::entry_points()"
    );
    // Each name also appears in reduce.cu's definitions (the compiler checks that a
    // definition matches its declaration).
    for name in gpu::entry_points() {
        assert!(
            word_count(src, name) >= 2,
            "{name} is declared in tutti_kernels.h but not defined in reduce.cu"
        );
    }
}

#[test]
fn image_facts_are_consistent() {
    let image = gpu::kernel_image();
    assert!(image.how.starts_with(match image.kind {
        KernelImageKind::Fatbin => "fatbin",
        KernelImageKind::Ptx => "PTX",
        _ => "CUDA source",
    }));
    assert_eq!(
        image.compiler.is_empty(),
        image.kind == KernelImageKind::Source
    );
    assert_eq!(
        gpu::kernel_ptx().is_some(),
        image.kind != KernelImageKind::Source
    );
}
