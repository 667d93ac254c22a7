//! The few FFmpeg calls the safe `ffmpeg-next` wrapper lacks: whether a
//! frame's buffers are shared with a codec (so reusing it would corrupt a
//! frame still in flight), and a hardware device and frames context with
//! the upload of each picture into a device surface (the VAAPI encoders:
//! opening them is their probe). Every unsafe block says why it is sound.

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

/// A hardware frames context (a pool of device surfaces) on a device
/// context of its own: what a VAAPI encoder takes its input from. Frames
/// are written in system memory (`sw_format`) and uploaded into a surface
/// of the pool before each encode (`av_hwframe_transfer_data`).
pub(super) struct HwFrames {
    device: *mut ffi::AVBufferRef,
    frames: *mut ffi::AVBufferRef,
}

// SAFETY: the two references are owned by this value alone (never shared
// with another thread while it lives); FFmpeg's buffer references may be
// used and released from any thread.
unsafe impl Send for HwFrames {}

impl std::fmt::Debug for HwFrames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HwFrames").finish_non_exhaustive()
    }
}

impl HwFrames {
    /// Opens device `device` (a render node) of `kind` (`vaapi`) and a
    /// pool of `width`×`height` surfaces holding `sw_format` pictures.
    pub(super) fn new(
        kind: &str,
        device: &str,
        sw_format: ffmpeg_next::format::Pixel,
        width: u32,
        height: u32,
    ) -> Result<Self, String> {
        let (Ok(kind_c), Ok(device_c)) = (CString::new(kind), CString::new(device)) else {
            return Err("device name holds a NUL byte".to_owned());
        };
        let (Ok(w), Ok(h)) = (i32::try_from(width), i32::try_from(height)) else {
            return Err(format!("{width}x{height} is out of range"));
        };
        // SAFETY: kind_c is a valid NUL-terminated string for the call.
        let ty = unsafe { ffi::av_hwdevice_find_type_by_name(kind_c.as_ptr()) };
        let hw_format = match ty {
            ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_VAAPI => ffi::AVPixelFormat::AV_PIX_FMT_VAAPI,
            ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_NONE => {
                return Err(format!("this FFmpeg has no {kind} device support"));
            }
            _ => return Err(format!("frame upload to {kind} surfaces is not supported")),
        };
        let mut this = Self {
            device: std::ptr::null_mut(),
            frames: std::ptr::null_mut(),
        };
        // SAFETY: `this.device` is a valid out-pointer; device_c a valid
        // string; no options; flags 0. On success it holds one reference,
        // released by Drop (also on the error paths below).
        let rc = unsafe {
            ffi::av_hwdevice_ctx_create(
                &mut this.device,
                ty,
                device_c.as_ptr(),
                std::ptr::null_mut(),
                0,
            )
        };
        if rc < 0 {
            return Err(format!(
                "cannot open {kind} device {device}: {}",
                ffmpeg_next::Error::from(rc)
            ));
        }
        // SAFETY: `this.device` is a live device context reference.
        this.frames = unsafe { ffi::av_hwframe_ctx_alloc(this.device) };
        if this.frames.is_null() {
            return Err(format!("cannot allocate a {kind} frames context"));
        }
        // SAFETY: av_hwframe_ctx_alloc returned a reference whose data is
        // an AVHWFramesContext, not yet initialised: its fields are ours
        // to set until av_hwframe_ctx_init.
        let rc = unsafe {
            let ctx = (*this.frames).data.cast::<ffi::AVHWFramesContext>();
            (*ctx).format = hw_format;
            (*ctx).sw_format = sw_format.into();
            (*ctx).width = w;
            (*ctx).height = h;
            // The encoder holds a few surfaces in flight; real-time
            // settings (no B-frames, no lookahead) need few.
            (*ctx).initial_pool_size = 8;
            ffi::av_hwframe_ctx_init(this.frames)
        };
        if rc < 0 {
            return Err(format!(
                "cannot set up {kind} surfaces ({width}x{height}): {}",
                ffmpeg_next::Error::from(rc)
            ));
        }
        Ok(this)
    }

    /// Gives the encoder being set up (`ctx`, not yet opened) this pool
    /// as its input.
    pub(super) fn attach(&self, ctx: &mut ffmpeg_next::codec::Context) -> Result<(), String> {
        // SAFETY: `self.frames` is a live, initialised frames context; the
        // new reference is owned by the codec context, which releases it
        // when it is freed. The context is not open yet, so nothing reads
        // the field concurrently.
        unsafe {
            let reference = ffi::av_buffer_ref(self.frames);
            if reference.is_null() {
                return Err("cannot reference the frames context".to_owned());
            }
            let raw = ctx.as_mut_ptr();
            ffi::av_buffer_unref(&mut (*raw).hw_frames_ctx);
            (*raw).hw_frames_ctx = reference;
        }
        Ok(())
    }

    /// Uploads the system-memory picture `sw` into a fresh surface of the
    /// pool, held by `hw` (whose previous surface is released).
    pub(super) fn upload(
        &self,
        sw: &frame::Video,
        hw: &mut frame::Video,
    ) -> Result<(), ffmpeg_next::Error> {
        // SAFETY: `hw` and `sw` own valid AVFrames for the call; `hw` is
        // unreferenced first, so av_hwframe_get_buffer fills an empty
        // frame from our live pool; the transfer reads `sw`'s planes,
        // which match the pool's sw_format and size (the caller's frame).
        let rc = unsafe {
            ffi::av_frame_unref(hw.as_mut_ptr());
            let rc = ffi::av_hwframe_get_buffer(self.frames, hw.as_mut_ptr(), 0);
            if rc < 0 {
                rc
            } else {
                ffi::av_hwframe_transfer_data(hw.as_mut_ptr(), sw.as_ptr(), 0)
            }
        };
        if rc < 0 {
            Err(ffmpeg_next::Error::from(rc))
        } else {
            Ok(())
        }
    }
}

impl Drop for HwFrames {
    fn drop(&mut self) {
        // SAFETY: each is null or the one reference this value holds;
        // av_buffer_unref accepts null and nulls the pointer.
        unsafe {
            ffi::av_buffer_unref(&mut self.frames);
            ffi::av_buffer_unref(&mut self.device);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_render_node_fails_cleanly() {
        let absent = "/dev/dri/renderD999-not-here";
        let e =
            HwFrames::new("vaapi", absent, ffmpeg_next::format::Pixel::NV12, 160, 128).unwrap_err();
        assert!(
            e.contains(absent) || e.contains("no vaapi device support"),
            "{e}"
        );
        let e = HwFrames::new(
            "no-such-kind",
            absent,
            ffmpeg_next::format::Pixel::NV12,
            16,
            16,
        )
        .unwrap_err();
        assert!(e.contains("no no-such-kind device support"), "{e}");
    }
}
