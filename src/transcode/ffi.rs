//! The few FFmpeg calls the safe `ffmpeg-next` wrapper lacks: whether a
//! frame's buffers are shared with a codec (so reusing it would corrupt a
//! frame still in flight), and opening a hardware device context (the
//! VAAPI probe). Every unsafe block says why it is sound.

#![allow(unsafe_code)] // FFI module (STYLE.md 12): each block has a SAFETY note.

use std::ffi::CString;

use ffmpeg_next::ffi;
use ffmpeg_next::frame;

/// Makes `frame`'s buffers ours alone, copying them when an encoder still
/// holds a reference (hardware encoders keep frames in flight).
pub(super) fn make_writable(frame: &mut frame::Video) -> Result<(), ffmpeg_next::Error> {
    // SAFETY: `frame` owns a valid AVFrame for the call; av_frame_make_writable
    // only replaces its buffers with fresh copies when they are shared.
    let rc = unsafe { ffi::av_frame_make_writable(frame.as_mut_ptr()) };
    if rc < 0 {
        Err(ffmpeg_next::Error::from(rc))
    } else {
        Ok(())
    }
}

/// Opens a hardware device context of `kind` (e.g. `vaapi`) on `device`
/// (e.g. `/dev/dri/renderD128`) and closes it again: whether the driver
/// stack is there and the device may be opened by this user.
pub(super) fn probe_hw_device(kind: &str, device: &str) -> Result<(), String> {
    let (Ok(kind_c), Ok(device_c)) = (CString::new(kind), CString::new(device)) else {
        return Err("device name holds a NUL byte".to_owned());
    };
    // SAFETY: kind_c is a valid NUL-terminated string for the call.
    let ty = unsafe { ffi::av_hwdevice_find_type_by_name(kind_c.as_ptr()) };
    if ty == ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_NONE {
        return Err(format!("this FFmpeg has no {kind} device support"));
    }
    let mut ctx: *mut ffi::AVBufferRef = std::ptr::null_mut();
    // SAFETY: ctx is a valid out-pointer; device_c a valid string; no
    // options dictionary; flags 0. On success ctx holds one reference.
    let rc = unsafe {
        ffi::av_hwdevice_ctx_create(&mut ctx, ty, device_c.as_ptr(), std::ptr::null_mut(), 0)
    };
    if rc < 0 {
        return Err(format!(
            "cannot open {kind} device {device}: {}",
            ffmpeg_next::Error::from(rc)
        ));
    }
    // SAFETY: ctx is the reference av_hwdevice_ctx_create gave us.
    unsafe { ffi::av_buffer_unref(&mut ctx) };
    Ok(())
}
