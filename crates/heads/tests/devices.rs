//! `is_cpu_device` picks the host engines: it must recognise burn's CPU devices, with and
//! without autodiff (decision H11: it reads the device's `Debug` form).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use burn::tensor::Device;
use ueb_kernels::burn_ops::is_cpu_device;

#[test]
fn flex_and_ndarray_are_cpu_devices_with_and_without_autodiff() {
    #[allow(deprecated)] // burn 0.22 deprecates ndarray; ueb still offers it
    let ndarray = Device::ndarray();
    for device in [Device::flex(), ndarray] {
        assert!(is_cpu_device(&device), "{device:?}");
        assert!(is_cpu_device(&device.clone().autodiff()), "{device:?} with autodiff");
    }
}
