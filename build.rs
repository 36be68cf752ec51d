//! Build script: compiles the CUDA kernels in `kernels/`.
//!
//! 1. `nvcc` found (`$NVCC`, `PATH`, `$CUDA_PATH/bin`, `$CUDA_HOME/bin`,
//!    `/usr/local/cuda/bin`): a fatbin with SASS for sm_80 and sm_90 plus compute_90
//!    PTX, and a compute_80 PTX text.
//! 2. Else libnvrtc found (`$TUTTI_NVRTC_LIB`, pip's `nvidia/cuda_nvrtc/lib`,
//!    `$CUDA_PATH/lib64`, `$CUDA_HOME/lib64`, `/usr/local/cuda/lib64`, the loader's
//!    search path): PTX for compute_80, compiled here through NVRTC.
//! 3. Else the source is embedded and compiled with NVRTC at first use.
//!
//! A missing CUDA toolkit never fails the build; a kernel compile error fails it
//! wherever a compiler is present. `TUTTI_REQUIRE_NVRTC=1` turns "no compiler found"
//! into an error (CI sets it). `TUTTI_KERNEL_COMPILER=nvcc|nvrtc|none` forces a path
//! (`auto`, the default, takes the first available). When `ptxas` is found, the PTX is
//! also assembled for sm_90 and the register and spill counts are reported.
//!
//! NVRTC's PTX and ptxas's cubins are cached under `<target>/<profile>/tutti-kernel-cache/`
//! by a key of everything they depend on, so the lint and test builds of one target
//! directory compile the kernels once ([`Cache`]).
//!
//! The crate learns what was built from `cfg(tutti_kernels = "fatbin" | "ptx" |
//! "source")` and the `TUTTI_KERNELS_*` environment variables; the files are in
//! `OUT_DIR` (`tutti_kernels.cu`, `.ptx`, `.fatbin`).

use std::collections::BTreeSet;
use std::env;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every environment variable this script reads.
const ENV_VARS: &[&str] = &[
    "TUTTI_KERNEL_COMPILER",
    "TUTTI_REQUIRE_NVRTC",
    "TUTTI_NVRTC_LIB",
    "TUTTI_CUDA_INCLUDE",
    "NVCC",
    "CUDA_PATH",
    "CUDA_HOME",
    "PATH",
];

/// The translation unit; its `#include "..."` files are inlined from `kernels/`.
const MAIN_SOURCE: &str = "reduce.cu";

/// Options for every compile: IEEE arithmetic, no contraction, no flush to zero (the
/// results must equal the CPU kernels bit for bit).
const NUMERIC_FLAGS: &[&str] = &[
    "--fmad=false",
    "--ftz=false",
    "--prec-div=true",
    "--prec-sqrt=true",
];

/// The virtual architecture of the PTX text (the oldest the kernels target).
const PTX_ARCH: &str = "compute_80";

fn main() {
    if let Err(msg) = run() {
        eprintln!("error: tutti kernels: {msg}");
        std::process::exit(1);
    }
}

/// What the build produced.
struct Built {
    /// `fatbin`, `ptx` or `source`.
    kind: &'static str,
    /// Compiler and version, e.g. `NVRTC 12.9`; empty for `source`.
    compiler: String,
    /// Architectures in the image.
    arch: String,
    /// The PTX text (compute_80), when compiled.
    ptx: Option<String>,
    /// One line: how the kernels were built.
    how: String,
}

fn run() -> Result<(), String> {
    println!("cargo::rerun-if-changed=kernels");
    for var in ENV_VARS {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rustc-check-cfg=cfg(tutti_kernels, values(\"fatbin\", \"ptx\", \"source\"))");
    println!("cargo::rustc-check-cfg=cfg(tutti_cubins)");

    let manifest =
        PathBuf::from(env_str("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR is not set")?);
    let out = PathBuf::from(env_str("OUT_DIR").ok_or("OUT_DIR is not set")?);
    let source = amalgamate(&manifest.join("kernels"), MAIN_SOURCE)?;
    let declared = source
        .lines()
        .filter(|l| l.starts_with("TUTTI_KERNEL tutti_"))
        .count();
    let cu = out.join("tutti_kernels.cu");
    write(&cu, source.as_bytes())?;
    // Files the crate may include: always present (empty when not built).
    write(&out.join("tutti_kernels.ptx"), b"")?;
    write(&out.join("tutti_kernels.fatbin"), b"")?;

    let require = env_str("TUTTI_REQUIRE_NVRTC").is_some_and(|v| v == "1");
    let choice = env_str("TUTTI_KERNEL_COMPILER").unwrap_or_else(|| "auto".into());
    let sites = python_site_packages();
    let mut searched = Vec::new();

    let mut built = match choice.as_str() {
        "auto" | "nvcc" | "nvrtc" | "none" => {
            let mut built = None;
            if matches!(choice.as_str(), "auto" | "nvcc") {
                match find_nvcc(&mut searched) {
                    Some(nvcc) => built = Some(build_nvcc(&nvcc, &cu, &out)?),
                    None if choice == "nvcc" => {
                        return Err(format!(
                            "TUTTI_KERNEL_COMPILER=nvcc but no working nvcc was found (searched: {})",
                            searched.join(", ")
                        ));
                    }
                    None => {}
                }
            }
            if built.is_none() && matches!(choice.as_str(), "auto" | "nvrtc") {
                match find_nvrtc(&sites, &mut searched) {
                    Some(nvrtc) => built = Some(build_nvrtc(&nvrtc, &source, &sites, &out)?),
                    None if choice == "nvrtc" => {
                        return Err(format!(
                            "TUTTI_KERNEL_COMPILER=nvrtc but libnvrtc could not be loaded (searched: {})",
                            searched.join(", ")
                        ));
                    }
                    None => {}
                }
            }
            match built {
                Some(b) => b,
                None if require => {
                    let searched = if searched.is_empty() {
                        "nothing: TUTTI_KERNEL_COMPILER=none".to_string()
                    } else {
                        searched.join(", ")
                    };
                    return Err(format!(
                        "TUTTI_REQUIRE_NVRTC=1 but no CUDA compiler was found (searched: {searched}). \
                         Install one (pip install nvidia-cuda-nvrtc-cu12 nvidia-cuda-runtime-cu12, or a CUDA \
                         toolkit), or point TUTTI_NVRTC_LIB at libnvrtc.so"
                    ));
                }
                None => {
                    let why = if choice == "none" {
                        "TUTTI_KERNEL_COMPILER=none"
                    } else {
                        "no nvcc or libnvrtc found at build time"
                    };
                    Built {
                        kind: "source",
                        compiler: String::new(),
                        arch: String::new(),
                        ptx: None,
                        how: format!(
                            "CUDA source embedded ({declared} entry points), to be compiled by NVRTC at first use ({why})"
                        ),
                    }
                }
            }
        }
        other => {
            return Err(format!(
                "TUTTI_KERNEL_COMPILER={other:?}: expected auto, nvcc, nvrtc or none"
            ));
        }
    };

    if let Some(ptx) = &built.ptx {
        let entries = ptx.matches(".entry ").count();
        if entries != declared {
            return Err(format!(
                "the PTX has {entries} entry points but tutti_kernels.h declares {declared}"
            ));
        }
        write(&out.join("tutti_kernels.ptx"), ptx.as_bytes())?;
        // nvcc's fatbin already holds SASS; NVRTC's PTX gets cubins when ptxas is
        // here (they load on drivers older than the PTX's ISA version).
        if let Some(ptxas) = assemble(&sites, &out, built.kind == "ptx") {
            println!("cargo::rustc-cfg=tutti_cubins");
            built.arch = format!("{},sm_80,sm_90", built.arch);
            built.how = format!(
                "{}; SASS for sm_80 and sm_90 assembled by {ptxas}",
                built.how
            );
        }
    }

    println!("cargo::rustc-cfg=tutti_kernels=\"{}\"", built.kind);
    println!("cargo::rustc-env=TUTTI_KERNELS_KIND={}", built.kind);
    println!("cargo::rustc-env=TUTTI_KERNELS_COMPILER={}", built.compiler);
    println!("cargo::rustc-env=TUTTI_KERNELS_ARCH={}", built.arch);
    println!("cargo::rustc-env=TUTTI_KERNELS_HOW={}", built.how);
    println!("cargo::warning=tutti kernels: {}", built.how);
    Ok(())
}

// ------------------------------------------------------------------ helpers ----------

/// A non-empty environment variable.
fn env_str(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.is_empty())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The translation unit with its local `#include "..."` files inlined (each once), with
/// `#line` directives so compiler messages name the original files and lines.
fn amalgamate(dir: &Path, main: &str) -> Result<String, String> {
    fn inline(
        dir: &Path,
        name: &str,
        seen: &mut BTreeSet<String>,
        out: &mut String,
    ) -> Result<(), String> {
        let path = dir.join(name);
        println!("cargo::rerun-if-changed={}", path.display());
        let text = fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if text.contains('\0') {
            return Err(format!("{} contains a NUL byte", path.display()));
        }
        out.push_str(&format!("#line 1 \"kernels/{name}\"\n"));
        for (i, line) in text.lines().enumerate() {
            let include = line
                .trim()
                .strip_prefix("#include")
                .map(str::trim)
                .and_then(|r| r.strip_prefix('"'))
                .and_then(|r| r.strip_suffix('"'));
            match include {
                Some(inc) => {
                    if seen.insert(inc.to_string()) {
                        inline(dir, inc, seen, out)?;
                    }
                    out.push_str(&format!("#line {} \"kernels/{name}\"\n", i + 2));
                }
                None => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        Ok(())
    }
    let mut seen = BTreeSet::from([main.to_string()]);
    let mut out = String::new();
    inline(dir, main, &mut seen, &mut out)?;
    Ok(out)
}

/// Python's site-packages directories (where pip puts `nvidia/cuda_nvrtc/...`); empty
/// when python3 is missing.
fn python_site_packages() -> Vec<PathBuf> {
    let script =
        "import site,sys; print('\\n'.join(site.getsitepackages()+[site.getusersitepackages()]))";
    match Command::new("python3").args(["-c", script]).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .collect(),
        _ => Vec::new(),
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The CUDA toolkit roots named by the environment, then the default one.
fn cuda_roots() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = ["CUDA_PATH", "CUDA_HOME"]
        .iter()
        .filter_map(|v| env_str(v))
        .map(PathBuf::from)
        .collect();
    roots.push(PathBuf::from("/usr/local/cuda"));
    roots
}

/// Runs `tool --version` and returns the `release X.Y` it prints.
fn tool_release(tool: &Path) -> Option<String> {
    let o = Command::new(tool).arg("--version").output().ok()?;
    if !o.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let release = text
        .split("release ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or("unknown version");
    Some(release.trim().to_string())
}

// ------------------------------------------------------------------ nvcc -------------

/// A working nvcc and its release.
struct Nvcc {
    path: PathBuf,
    release: String,
}

fn find_nvcc(searched: &mut Vec<String>) -> Option<Nvcc> {
    let mut candidates = Vec::new();
    if let Some(explicit) = env_str("NVCC") {
        // An explicit choice is authoritative: no other nvcc is tried.
        candidates.push(PathBuf::from(explicit));
    } else {
        candidates.extend(find_in_path("nvcc"));
        candidates.extend(cuda_roots().into_iter().map(|r| r.join("bin").join("nvcc")));
    }
    for path in candidates {
        searched.push(format!("nvcc at {}", path.display()));
        if let Some(release) = tool_release(&path) {
            return Some(Nvcc { path, release });
        }
    }
    if env_str("NVCC").is_some() {
        println!("cargo::warning=tutti kernels: NVCC is set but does not run; not using nvcc");
    }
    if find_in_path("nvcc").is_none() {
        searched.push("nvcc on PATH".into());
    }
    None
}

fn build_nvcc(nvcc: &Nvcc, cu: &Path, out: &Path) -> Result<Built, String> {
    let fatbin = out.join("tutti_kernels.fatbin");
    let ptx = out.join("tutti_kernels.nvcc.ptx");
    let run = |args: Vec<String>| -> Result<(), String> {
        let o = Command::new(&nvcc.path)
            .args(&args)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", nvcc.path.display()))?;
        if !o.status.success() {
            return Err(format!(
                "nvcc failed to compile the kernels ({} {}):\n{}{}",
                nvcc.path.display(),
                args.join(" "),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        Ok(())
    };
    let numeric = NUMERIC_FLAGS.iter().map(|s| s.to_string());
    // Device code only: the host compiler merely preprocesses, so a host compiler
    // newer than this nvcc supports is fine.
    let mut args: Vec<String> = vec!["--fatbin".into(), "-allow-unsupported-compiler".into()];
    for gencode in [
        "arch=compute_80,code=sm_80",
        "arch=compute_90,code=sm_90",
        "arch=compute_90,code=compute_90",
    ] {
        args.push("-gencode".into());
        args.push(gencode.into());
    }
    args.extend(numeric.clone());
    args.extend([
        "-o".into(),
        fatbin.display().to_string(),
        cu.display().to_string(),
    ]);
    run(args)?;
    let mut args: Vec<String> = vec![
        "--ptx".into(),
        "-allow-unsupported-compiler".into(),
        format!("-arch={PTX_ARCH}"),
    ];
    args.extend(numeric);
    args.extend([
        "-o".into(),
        ptx.display().to_string(),
        cu.display().to_string(),
    ]);
    run(args)?;
    let text =
        fs::read_to_string(&ptx).map_err(|e| format!("cannot read {}: {e}", ptx.display()))?;
    let entries = text.matches(".entry ").count();
    Ok(Built {
        kind: "fatbin",
        compiler: format!("nvcc {}", nvcc.release),
        arch: "sm_80,sm_90,compute_90".into(),
        how: format!(
            "fatbin (sm_80, sm_90, compute_90 PTX) compiled by nvcc {} ({}), {entries} entry points",
            nvcc.release,
            nvcc.path.display()
        ),
        ptx: Some(text),
    })
}

// ------------------------------------------------------------------ NVRTC ------------

type NvrtcProgram = *mut c_void;
type NvrtcResult = c_int;

/// libnvrtc, loaded with libloading, and the entry points the build needs.
struct Nvrtc {
    path: String,
    major: c_int,
    minor: c_int,
    create: unsafe extern "C" fn(
        *mut NvrtcProgram,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> NvrtcResult,
    compile: unsafe extern "C" fn(NvrtcProgram, c_int, *const *const c_char) -> NvrtcResult,
    log_size: unsafe extern "C" fn(NvrtcProgram, *mut usize) -> NvrtcResult,
    log: unsafe extern "C" fn(NvrtcProgram, *mut c_char) -> NvrtcResult,
    ptx_size: unsafe extern "C" fn(NvrtcProgram, *mut usize) -> NvrtcResult,
    ptx: unsafe extern "C" fn(NvrtcProgram, *mut c_char) -> NvrtcResult,
    destroy: unsafe extern "C" fn(*mut NvrtcProgram) -> NvrtcResult,
    error_string: unsafe extern "C" fn(NvrtcResult) -> *const c_char,
    // Keeps the function pointers above valid; dropped last.
    _lib: libloading::Library,
}

impl Nvrtc {
    fn load(path: &str) -> Result<Nvrtc, String> {
        // SAFETY: loading libnvrtc runs its initializers, which have no preconditions;
        // the library stays loaded as long as the returned value (it owns `_lib`).
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| e.to_string())?;
        macro_rules! sym {
            ($name:literal) => {
                // SAFETY: the symbol is declared with its C signature from nvrtc.h; the
                // pointer is copied out and used only while `lib` is alive (it is moved
                // into the returned struct).
                *unsafe { lib.get(concat!($name, "\0").as_bytes()) }
                    .map_err(|e| format!("{}: {e}", $name))?
            };
        }
        let version: unsafe extern "C" fn(*mut c_int, *mut c_int) -> NvrtcResult =
            sym!("nvrtcVersion");
        let (mut major, mut minor) = (0, 0);
        // SAFETY: nvrtcVersion writes two ints through valid pointers.
        let rc = unsafe { version(&mut major, &mut minor) };
        if rc != 0 {
            return Err(format!("nvrtcVersion failed with code {rc}"));
        }
        Ok(Nvrtc {
            path: path.to_string(),
            major,
            minor,
            create: sym!("nvrtcCreateProgram"),
            compile: sym!("nvrtcCompileProgram"),
            log_size: sym!("nvrtcGetProgramLogSize"),
            log: sym!("nvrtcGetProgramLog"),
            ptx_size: sym!("nvrtcGetPTXSize"),
            ptx: sym!("nvrtcGetPTX"),
            destroy: sym!("nvrtcDestroyProgram"),
            error_string: sym!("nvrtcGetErrorString"),
            _lib: lib,
        })
    }

    fn error(&self, rc: NvrtcResult) -> String {
        // SAFETY: nvrtcGetErrorString returns a static NUL-terminated string (or null).
        let s = unsafe { (self.error_string)(rc) };
        if s.is_null() {
            return format!("NVRTC error {rc}");
        }
        // SAFETY: non-null, NUL-terminated, static (see above).
        unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
    }

    /// Compiles `source` to PTX; `Err` holds the compiler log.
    fn compile(&self, source: &str, name: &str, options: &[String]) -> Result<String, String> {
        let src = CString::new(source).map_err(|e| e.to_string())?;
        let name = CString::new(name).map_err(|e| e.to_string())?;
        let opts: Vec<CString> = options
            .iter()
            .map(|o| CString::new(o.as_str()).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let opt_ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
        let mut prog: NvrtcProgram = std::ptr::null_mut();
        // SAFETY: every pointer is a live NUL-terminated string; no headers are passed.
        let rc = unsafe {
            (self.create)(
                &mut prog,
                src.as_ptr(),
                name.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(format!("nvrtcCreateProgram: {}", self.error(rc)));
        }
        let n_opts = c_int::try_from(opt_ptrs.len()).map_err(|e| e.to_string())?;
        // SAFETY: `prog` was created above; the option array holds `n_opts` live strings.
        let rc = unsafe { (self.compile)(prog, n_opts, opt_ptrs.as_ptr()) };
        let result = if rc != 0 {
            Err(format!(
                "{}\n{}",
                self.error(rc),
                self.read(prog, self.log_size, self.log)
            ))
        } else {
            Ok(self.read(prog, self.ptx_size, self.ptx))
        };
        // SAFETY: `prog` is a valid program, destroyed exactly once.
        unsafe { (self.destroy)(&mut prog) };
        result
    }

    /// Reads the log or the PTX of `prog` (size call, then copy call).
    fn read(
        &self,
        prog: NvrtcProgram,
        size: unsafe extern "C" fn(NvrtcProgram, *mut usize) -> NvrtcResult,
        copy: unsafe extern "C" fn(NvrtcProgram, *mut c_char) -> NvrtcResult,
    ) -> String {
        let mut n = 0usize;
        // SAFETY: `prog` is valid; `n` is a valid out pointer.
        if unsafe { size(prog, &mut n) } != 0 || n == 0 {
            return String::new();
        }
        let mut buf = vec![0u8; n];
        // SAFETY: `buf` holds the `n` bytes NVRTC said it writes (NUL included).
        if unsafe { copy(prog, buf.as_mut_ptr().cast()) } != 0 {
            return String::new();
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    }
}

fn find_nvrtc(sites: &[PathBuf], searched: &mut Vec<String>) -> Option<Nvrtc> {
    let mut candidates: Vec<String> = Vec::new();
    let explicit = env_str("TUTTI_NVRTC_LIB");
    if let Some(lib) = &explicit {
        // An explicit choice is authoritative: no other libnvrtc is tried.
        candidates.push(lib.clone());
    } else {
        let mut dirs: Vec<PathBuf> = sites
            .iter()
            .map(|s| s.join("nvidia/cuda_nvrtc/lib"))
            .collect();
        dirs.extend(cuda_roots().into_iter().map(|r| r.join("lib64")));
        for dir in dirs {
            searched.push(format!("libnvrtc.so* in {}", dir.display()));
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("libnvrtc.so"))
                .collect();
            names.sort();
            candidates.extend(names.into_iter().map(|n| dir.join(n).display().to_string()));
        }
        candidates.extend(["libnvrtc.so.12".to_string(), "libnvrtc.so".to_string()]);
        searched.push("libnvrtc.so.12 / libnvrtc.so on the loader's path".into());
    }
    let mut errors = Vec::new();
    for candidate in &candidates {
        match Nvrtc::load(candidate) {
            Ok(nvrtc) => return Some(nvrtc),
            Err(e) => errors.push(format!("{candidate}: {e}")),
        }
    }
    if let Some(lib) = explicit {
        println!(
            "cargo::warning=tutti kernels: TUTTI_NVRTC_LIB={lib} cannot be loaded ({}); not using NVRTC at build time",
            errors.join("; ")
        );
        searched.push(format!("TUTTI_NVRTC_LIB={lib}"));
    }
    None
}

/// The directory holding `cuda_fp16.h`, if any (the kernels do not need it; passed so
/// that kernels may include CUDA's headers).
fn find_cuda_include(sites: &[PathBuf]) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = env_str("TUTTI_CUDA_INCLUDE")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    dirs.extend(sites.iter().map(|s| s.join("nvidia/cuda_runtime/include")));
    dirs.extend(cuda_roots().into_iter().map(|r| r.join("include")));
    dirs.into_iter().find(|d| d.join("cuda_fp16.h").is_file())
}

fn build_nvrtc(
    nvrtc: &Nvrtc,
    source: &str,
    sites: &[PathBuf],
    out: &Path,
) -> Result<Built, String> {
    let mut options: Vec<String> = vec![format!("--gpu-architecture={PTX_ARCH}")];
    options.extend(NUMERIC_FLAGS.iter().map(|s| s.to_string()));
    if let Some(inc) = find_cuda_include(sites) {
        options.push(format!("--include-path={}", inc.display()));
    }
    let cache = Cache::new(
        out,
        &format!(
            "nvrtc {} {}.{}\n{}\n{}",
            nvrtc.path,
            nvrtc.major,
            nvrtc.minor,
            options.join(" "),
            fingerprint(source.as_bytes())
        ),
    );
    const PTX_FILE: &str = "tutti_kernels.ptx";
    let hit = cache
        .as_ref()
        .and_then(|c| c.get(&[PTX_FILE]))
        .and_then(|dir| fs::read_to_string(dir.join(PTX_FILE)).ok());
    let from_cache = hit.is_some();
    let ptx = match hit {
        Some(ptx) => ptx,
        None => {
            let ptx = compile_nvrtc(nvrtc, source, &options)?;
            if let Some(c) = &cache {
                c.put(&[(PTX_FILE, ptx.as_bytes())]);
            }
            ptx
        }
    };
    let entries = ptx.matches(".entry ").count();
    let cached = if from_cache { ", cached" } else { "" };
    Ok(Built {
        kind: "ptx",
        compiler: format!("NVRTC {}.{}", nvrtc.major, nvrtc.minor),
        arch: PTX_ARCH.into(),
        how: format!(
            "PTX ({PTX_ARCH}) compiled by NVRTC {}.{} at build time ({}){cached}, {entries} entry points",
            nvrtc.major, nvrtc.minor, nvrtc.path
        ),
        ptx: Some(ptx),
    })
}

fn compile_nvrtc(nvrtc: &Nvrtc, source: &str, options: &[String]) -> Result<String, String> {
    nvrtc
        .compile(source, "kernels/reduce.cu", options)
        .map_err(|log| {
            format!(
                "NVRTC {}.{} ({}) failed to compile the kernels (options: {}):\n{log}",
                nvrtc.major,
                nvrtc.minor,
                nvrtc.path,
                options.join(" ")
            )
        })
}

// ------------------------------------------------------------------ ptxas ------------

fn find_ptxas(sites: &[PathBuf]) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(nvcc) = env_str("NVCC") {
        candidates.extend(Path::new(&nvcc).parent().map(|d| d.join("ptxas")));
    }
    candidates.extend(find_in_path("ptxas"));
    candidates.extend(sites.iter().map(|s| s.join("nvidia/cuda_nvcc/bin/ptxas")));
    candidates.extend(
        cuda_roots()
            .into_iter()
            .map(|r| r.join("bin").join("ptxas")),
    );
    candidates.into_iter().find(|p| p.is_file())
}

/// Assembles `tutti_kernels.ptx` for sm_80 and sm_90 with `ptxas -v` (both at once)
/// and prints a register and spill summary per architecture. Returns `ptxas <release>`
/// when both cubins were written and `embed` is set (the crate then embeds them).
/// Informational otherwise: no ptxas, or a ptxas failure, is a warning, not an error.
fn assemble(sites: &[PathBuf], out: &Path, embed: bool) -> Option<String> {
    const ARCHS: [&str; 2] = ["sm_80", "sm_90"];
    // The names src/gpu/image.rs embeds.
    const CUBINS: [&str; 2] = ["tutti_kernels.sm_80.cubin", "tutti_kernels.sm_90.cubin"];
    const SUMMARY: &str = "ptxas-summary.txt";
    let ptxas = find_ptxas(sites)?;
    let release = tool_release(&ptxas).unwrap_or_else(|| "unknown version".into());
    let ptx = out.join("tutti_kernels.ptx");
    let cache = fs::read(&ptx).ok().and_then(|text| {
        Cache::new(
            out,
            &format!(
                "ptxas {} {release}\n{}",
                ptxas.display(),
                fingerprint(&text)
            ),
        )
    });
    let files = [CUBINS[0], CUBINS[1], SUMMARY];
    if let Some(dir) = cache.as_ref().and_then(|c| c.get(&files)) {
        let copied = CUBINS
            .iter()
            .all(|f| fs::copy(dir.join(f), out.join(f)).is_ok());
        if let (true, Ok(summary)) = (copied, fs::read_to_string(dir.join(SUMMARY))) {
            for line in summary.lines() {
                println!("cargo::warning=tutti kernels: ptxas {release} {line} (cached)");
            }
            return embed.then(|| format!("ptxas {release}"));
        }
    }
    let run = |i: usize| {
        Command::new(&ptxas)
            .arg(format!("-arch={}", ARCHS[i]))
            .arg("-v")
            .arg("-o")
            .arg(out.join(CUBINS[i]))
            .arg(&ptx)
            .output()
    };
    let (sm80, sm90) = std::thread::scope(|s| {
        let sm80 = s.spawn(|| run(0));
        let sm90 = run(1);
        (sm80.join(), sm90)
    });
    let sm80 = sm80.unwrap_or_else(|_| Err(std::io::Error::other("ptxas thread panicked")));
    let mut all_ok = true;
    let mut summary = String::new();
    for (arch, output) in [(ARCHS[0], sm80), (ARCHS[1], sm90)] {
        let o = match output {
            Ok(o) => o,
            Err(e) => {
                println!(
                    "cargo::warning=tutti kernels: cannot run {}: {e}",
                    ptxas.display()
                );
                return None;
            }
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        if o.status.success() {
            let line = format!("{arch}: {}", summarize_ptxas(&text));
            println!("cargo::warning=tutti kernels: ptxas {release} {line}");
            summary.push_str(&line);
            summary.push('\n');
        } else {
            all_ok = false;
            let first = text
                .lines()
                .find(|l| l.contains("error"))
                .unwrap_or("")
                .trim()
                .to_string();
            println!(
                "cargo::warning=tutti kernels: ptxas {release} ({}) could not assemble the PTX for {arch}: {first}",
                ptxas.display()
            );
        }
    }
    if all_ok && let Some(c) = &cache {
        let cubins: Vec<Vec<u8>> = CUBINS
            .iter()
            .filter_map(|f| fs::read(out.join(f)).ok())
            .collect();
        if let [a, b] = cubins.as_slice() {
            c.put(&[
                (CUBINS[0], a),
                (CUBINS[1], b),
                (SUMMARY, summary.as_bytes()),
            ]);
        }
    }
    (all_ok && embed).then(|| format!("ptxas {release}"))
}

// ------------------------------------------------------------------ cache ------------

/// Compiler outputs kept between runs of this script, so that the lint build, the test
/// build and rebuilds after a change elsewhere in the crate do not compile the kernels
/// again (NVRTC and ptxas take most of a minute on 2 cores): one directory per key
/// under `<target>/<profile>/tutti-kernel-cache/`, the key being everything the output
/// depends on (the tool, its version and options, a fingerprint of the input). Any
/// trouble with the cache (a layout it does not recognise, a file it cannot read or
/// write) only means compiling again.
struct Cache {
    dir: PathBuf,
    key: String,
}

impl Cache {
    /// `None` where `out` is not `<target>/<profile>/build/<unit>/out`.
    fn new(out: &Path, key: &str) -> Option<Cache> {
        let unit = out.parent()?;
        let build = unit.parent()?;
        if out.file_name()? != "out" || build.file_name()? != "build" {
            return None;
        }
        let root = build.parent()?.join("tutti-kernel-cache");
        let name = format!("{:016x}", fingerprint_u64(key.as_bytes()));
        Some(Cache {
            dir: root.join(name),
            key: key.to_string(),
        })
    }

    /// The entry's directory when it holds this key and every one of `files`.
    fn get(&self, files: &[&str]) -> Option<PathBuf> {
        let key = fs::read_to_string(self.dir.join("key")).ok()?;
        (key == self.key && files.iter().all(|f| self.dir.join(f).is_file()))
            .then(|| self.dir.clone())
    }

    /// Stores `files` (name, bytes) under this key; written aside and renamed, so a
    /// reader never sees half an entry.
    fn put(&self, files: &[(&str, &[u8])]) {
        let Some(root) = self.dir.parent() else {
            return;
        };
        let tmp = root.join(format!(".tmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let written = fs::create_dir_all(&tmp).is_ok()
            && files
                .iter()
                .all(|(name, bytes)| fs::write(tmp.join(name), bytes).is_ok())
            && fs::write(tmp.join("key"), self.key.as_bytes()).is_ok();
        if written {
            let _ = fs::remove_dir_all(&self.dir);
            if fs::rename(&tmp, &self.dir).is_ok() {
                prune(root, CACHE_ENTRIES);
                return;
            }
        }
        let _ = fs::remove_dir_all(&tmp);
    }
}

/// Entries kept (a few kernel edits back, for each tool).
const CACHE_ENTRIES: usize = 8;

/// Removes all but the `keep` most recently written entries under `root`.
fn prune(root: &Path, keep: usize) {
    let Ok(rd) = fs::read_dir(root) else {
        return;
    };
    let mut entries: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (_, path) in entries.into_iter().skip(keep) {
        let _ = fs::remove_dir_all(path);
    }
}

/// A 64-bit fingerprint (FNV-1a) of `bytes`.
fn fingerprint_u64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// `bytes`' length and fingerprint, as text for a cache key.
fn fingerprint(bytes: &[u8]) -> String {
    format!(
        "{} bytes, fnv1a {:016x}",
        bytes.len(),
        fingerprint_u64(bytes)
    )
}

/// "92 functions, max 40 registers (tutti_prod_c128), no spills, no stack".
fn summarize_ptxas(text: &str) -> String {
    let mut current = String::new();
    let mut functions = 0usize;
    let (mut max_regs, mut max_fn) = (0u32, String::new());
    let mut spilled: Vec<String> = Vec::new();
    let mut max_stack = 0u32;
    let number_before = |line: &str, word: &str| -> Option<u32> {
        let idx = line.find(word)?;
        line[..idx].split_whitespace().last()?.parse().ok()
    };
    for line in text.lines() {
        if let Some(rest) = line.split("entry function '").nth(1) {
            current = rest.split('\'').next().unwrap_or("").to_string();
            functions += 1;
        }
        if let Some(regs) = number_before(line, "registers")
            && regs > max_regs
        {
            max_regs = regs;
            max_fn = current.clone();
        }
        if let Some(stack) = number_before(line, "bytes stack frame") {
            max_stack = max_stack.max(stack);
        }
        let stores = number_before(line, "bytes spill stores").unwrap_or(0);
        let loads = number_before(line, "bytes spill loads").unwrap_or(0);
        if stores + loads > 0 {
            spilled.push(format!("{current} ({stores} B stored, {loads} B loaded)"));
        }
    }
    let spills = if spilled.is_empty() {
        "no spills".to_string()
    } else {
        format!("SPILLS in {}", spilled.join(", "))
    };
    format!(
        "{functions} functions, max {max_regs} registers ({max_fn}), {spills}, max stack frame {max_stack} bytes"
    )
}
