//! GPU inventory through NVML (`libnvidia-ml.so.1`, loaded at run time with the
//! nvml-wrapper crate): model, driver, ECC mode and error counts, retired pages and
//! remapped rows, persistence mode, clocks and throttle reasons, PCIe link.
//! Without the driver every GPU check skips with the reason NVML gave.

use nvml_wrapper::Nvml;
use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::enum_wrappers::device::{
    Clock, EccCounter, MemoryError, RetirementCause, TemperatureSensor,
};
use serde::{Deserialize, Serialize};

/// One GPU as NVML reports it. `None`: the GPU does not support the query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// NVML index (all GPUs of the node, whatever `CUDA_VISIBLE_DEVICES` says).
    pub index: u32,
    /// Model (`NVIDIA H200`).
    pub name: String,
    /// UUID.
    pub uuid: Option<String>,
    /// PCI bus id.
    pub pci_bus_id: Option<String>,
    /// Memory size.
    pub memory_gib: Option<f64>,
    /// ECC currently enabled.
    pub ecc_enabled: Option<bool>,
    /// ECC enabled after the next reset.
    pub ecc_pending: Option<bool>,
    /// Uncorrected ECC errors since the driver loaded.
    pub ecc_uncorrected_volatile: Option<u64>,
    /// Uncorrected ECC errors over the GPU's life.
    pub ecc_uncorrected_aggregate: Option<u64>,
    /// Corrected ECC errors since the driver loaded.
    pub ecc_corrected_volatile: Option<u64>,
    /// Retired pages (both causes).
    pub retired_pages: Option<u64>,
    /// Pages waiting for retirement.
    pub retired_pages_pending: Option<bool>,
    /// Rows remapped for correctable / uncorrectable errors.
    pub remapped_rows: Option<(u32, u32)>,
    /// Remappings waiting for a reset.
    pub remapped_rows_pending: Option<bool>,
    /// A remapping failed.
    pub remapped_rows_failed: Option<bool>,
    /// Persistence mode.
    pub persistence_mode: Option<bool>,
    /// Current SM clock (MHz).
    pub sm_clock_mhz: Option<u32>,
    /// Maximum SM clock (MHz).
    pub sm_clock_max_mhz: Option<u32>,
    /// Current memory clock (MHz).
    pub mem_clock_mhz: Option<u32>,
    /// Active throttle reasons (NVML's names).
    pub throttle_reasons: Vec<String>,
    /// A slowdown that means trouble is active (hardware slowdown, thermal,
    /// power brake); power capping and idle clocks are normal.
    pub throttled: Option<bool>,
    /// Temperature (C).
    pub temperature_c: Option<u32>,
    /// PCIe generation now / at most.
    pub pcie_gen: Option<u32>,
    /// Maximum PCIe generation of the link.
    pub pcie_gen_max: Option<u32>,
    /// PCIe link width now.
    pub pcie_width: Option<u32>,
    /// Maximum PCIe link width.
    pub pcie_width_max: Option<u32>,
}

/// What NVML reports for a node.
pub struct NvmlInventory {
    /// Driver version.
    pub driver_version: String,
    /// CUDA version the driver supports.
    pub cuda_version: Option<String>,
    /// The GPUs.
    pub gpus: Vec<GpuInfo>,
}

/// Opens NVML (`libnvidia-ml.so.1`, else `libnvidia-ml.so`).
fn open() -> Result<Nvml, String> {
    let mut first = None;
    for lib in ["libnvidia-ml.so.1", "libnvidia-ml.so"] {
        match Nvml::builder().lib_path(std::ffi::OsStr::new(lib)).init() {
            Ok(n) => return Ok(n),
            Err(e) => {
                first.get_or_insert(format!("{lib}: {e}"));
            }
        }
    }
    Err(format!(
        "no NVIDIA driver (NVML: {})",
        first.unwrap_or_default()
    ))
}

/// Reads every GPU of this node (`Err`: why there are none to read).
pub fn inventory() -> Result<NvmlInventory, String> {
    let nvml = open()?;
    let driver_version = nvml
        .sys_driver_version()
        .map_err(|e| format!("NVML: driver version: {e}"))?;
    let cuda_version = nvml.sys_cuda_driver_version().ok().map(|v| {
        format!(
            "{}.{}",
            nvml_wrapper::cuda_driver_version_major(v),
            nvml_wrapper::cuda_driver_version_minor(v)
        )
    });
    let count = nvml
        .device_count()
        .map_err(|e| format!("NVML: device count: {e}"))?;
    let mut gpus = Vec::with_capacity(count as usize);
    for index in 0..count {
        let d = nvml
            .device_by_index(index)
            .map_err(|e| format!("NVML: GPU {index}: {e}"))?;
        gpus.push(read_gpu(&nvml, &d, index));
    }
    Ok(NvmlInventory {
        driver_version,
        cuda_version,
        gpus,
    })
}

fn read_gpu(nvml: &Nvml, d: &nvml_wrapper::Device<'_>, index: u32) -> GpuInfo {
    let ecc = d.is_ecc_enabled().ok();
    let retired = [
        RetirementCause::MultipleSingleBitEccErrors,
        RetirementCause::DoubleBitEccError,
    ]
    .iter()
    .map(|&c| d.retired_pages(c).map(|p| p.len() as u64))
    .collect::<Result<Vec<u64>, _>>()
    .ok()
    .map(|v| v.iter().sum());
    let remapped = remapped_rows(nvml, d);
    let reasons = d.current_throttle_reasons().ok();
    let bad = ThrottleReasons::HW_SLOWDOWN
        | ThrottleReasons::HW_THERMAL_SLOWDOWN
        | ThrottleReasons::HW_POWER_BRAKE_SLOWDOWN
        | ThrottleReasons::SW_THERMAL_SLOWDOWN;
    GpuInfo {
        index,
        name: d
            .name()
            .unwrap_or_else(|e| format!("(name unavailable: {e})")),
        uuid: d.uuid().ok(),
        pci_bus_id: d.pci_info().ok().map(|p| p.bus_id),
        memory_gib: d
            .memory_info()
            .ok()
            .map(|m| m.total as f64 / (1u64 << 30) as f64),
        ecc_enabled: ecc.as_ref().map(|e| e.currently_enabled),
        ecc_pending: ecc.as_ref().map(|e| e.pending_enabled),
        ecc_uncorrected_volatile: d
            .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)
            .ok(),
        ecc_uncorrected_aggregate: d
            .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Aggregate)
            .ok(),
        ecc_corrected_volatile: d
            .total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile)
            .ok(),
        retired_pages: retired,
        retired_pages_pending: d.are_pages_pending_retired().ok(),
        remapped_rows: remapped.map(|r| (r.0, r.1)),
        remapped_rows_pending: remapped.map(|r| r.2),
        remapped_rows_failed: remapped.map(|r| r.3),
        persistence_mode: d.is_in_persistent_mode().ok(),
        sm_clock_mhz: d.clock_info(Clock::SM).ok(),
        sm_clock_max_mhz: d.max_clock_info(Clock::SM).ok(),
        mem_clock_mhz: d.clock_info(Clock::Memory).ok(),
        throttle_reasons: reasons
            .map(|r| r.iter_names().map(|(n, _)| n.to_string()).collect())
            .unwrap_or_default(),
        throttled: reasons.map(|r| r.intersects(bad)),
        temperature_c: d.temperature(TemperatureSensor::Gpu).ok(),
        pcie_gen: d.current_pcie_link_gen().ok(),
        pcie_gen_max: d.max_pcie_link_gen().ok(),
        pcie_width: d.current_pcie_link_width().ok(),
        pcie_width_max: d.max_pcie_link_width().ok(),
    }
}

/// `nvmlDeviceGetRemappedRows` (Ampere and later), which nvml-wrapper does not
/// wrap: (correctable, uncorrectable, pending, failure).
fn remapped_rows(nvml: &Nvml, d: &nvml_wrapper::Device<'_>) -> Option<(u32, u32, bool, bool)> {
    let lib = nvml.lib();
    // An older driver without the symbol: not supported (calling it would panic).
    lib.nvmlDeviceGetRemappedRows.as_ref().ok()?;
    let (mut corr, mut unc, mut pending, mut failed) = (0u32, 0u32, 0u32, 0u32);
    // SAFETY: `d.handle()` is a live device handle of this `nvml` (the device borrows
    // it); the four out-pointers are valid, distinct `c_uint`s for the call's
    // duration; the symbol was checked present above.
    let rc = unsafe {
        lib.nvmlDeviceGetRemappedRows(d.handle(), &mut corr, &mut unc, &mut pending, &mut failed)
    };
    (rc == 0).then_some((corr, unc, pending != 0, failed != 0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_driver_is_a_reason_not_a_panic() {
        match super::inventory() {
            Ok(inv) => assert!(!inv.driver_version.is_empty()),
            Err(why) => assert!(why.contains("NVML"), "{why}"),
        }
    }
}
