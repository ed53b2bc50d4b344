//! What a stream's first bytes say it is, so a clip in the wrong place gets a pointer instead of
//! "bad magic".
//!
//! Y4M is read natively; everything else a user is likely to hand over (an MP4 renamed `.y4m`,
//! an MKV on `pipe://`) is recognised by its container's signature so the error can name it and
//! say how to feed it (`file://` decodes it through ffmpeg; a pipe needs ffmpeg in front).

/// The `YUV4MPEG2` signature.
pub const Y4M_MAGIC: &[u8] = b"YUV4MPEG2";

/// Bytes worth reading to tell the containers below apart.
pub const SNIFF_LEN: usize = 16;

/// The container or codec `head` (a stream's first bytes) starts like, if it is one ffmpeg reads
/// and rtinfer does not: `None` for Y4M and for anything unrecognised.
pub fn container(head: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, sig: &[u8]| head.get(offset..offset + sig.len()) == Some(sig);
    if at(0, Y4M_MAGIC) {
        None
    } else if at(4, b"ftyp") {
        Some("MP4/QuickTime (ISO BMFF)")
    } else if at(0, &[0x1a, 0x45, 0xdf, 0xa3]) {
        Some("Matroska/WebM")
    } else if at(0, b"RIFF") && at(8, b"AVI ") {
        Some("AVI")
    } else if at(0, &[0xff, 0xd8, 0xff]) {
        Some("JPEG/MJPEG")
    } else if at(0, b"FLV") {
        Some("FLV")
    } else if at(0, &[0, 0, 0, 1]) || at(0, &[0, 0, 1]) {
        Some("raw H.264/H.265 (Annex B)")
    } else if head.first() == Some(&0x47) && looks_like_ts(head) {
        Some("MPEG-TS")
    } else {
        None
    }
}

/// An MPEG-TS packet starts with 0x47 and a 13-bit PID; only the first packet is visible here,
/// so this also needs the transport-error bit clear.
fn looks_like_ts(head: &[u8]) -> bool {
    head.get(1).is_some_and(|b| b & 0x80 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_by_signature() {
        assert_eq!(container(b"YUV4MPEG2 W2 H2"), None);
        assert_eq!(
            container(b"\0\0\0\x20ftypisom\0\0\x02\0"),
            Some("MP4/QuickTime (ISO BMFF)")
        );
        assert_eq!(
            container(&[0x1a, 0x45, 0xdf, 0xa3, 1]),
            Some("Matroska/WebM")
        );
        assert_eq!(container(b"RIFF\0\0\0\0AVI LIST"), Some("AVI"));
        assert_eq!(container(&[0xff, 0xd8, 0xff, 0xe0]), Some("JPEG/MJPEG"));
        assert_eq!(
            container(&[0, 0, 0, 1, 0x67]),
            Some("raw H.264/H.265 (Annex B)")
        );
        assert_eq!(container(b"hello world"), None);
        assert_eq!(container(b""), None);
    }
}
