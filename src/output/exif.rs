//! A minimal EXIF block carrying the A1111 `parameters` text as its UserComment, which
//! is where A1111 and image sites look for the settings of a JPEG or WebP.

/// EXIF's UserComment tag.
const USER_COMMENT_TAG: u16 = 0x9286;
/// The IFD0 tag pointing at the EXIF sub-IFD.
const EXIF_IFD_TAG: u16 = 0x8769;
/// Character code of a UserComment in UTF-16 (read as big-endian, as piexif writes it).
const UNICODE_PREFIX: &[u8; 8] = b"UNICODE\0";
/// A JPEG APP1 segment holds at most 65,533 bytes, including the 6-byte `Exif\0\0`.
pub const MAX_EXIF_BYTES: usize = 65_533 - 6;

/// A big-endian TIFF block with IFD0 → EXIF IFD → UserComment = `text`, or `None`
/// when the text does not fit in one JPEG segment.
pub fn user_comment(text: &str) -> Option<Vec<u8>> {
    let mut comment = UNICODE_PREFIX.to_vec();
    comment.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
    // Header (8), IFD0 (2 + 12 + 4), EXIF IFD (2 + 12 + 4), then the comment.
    const IFD0: u32 = 8;
    const EXIF_IFD: u32 = IFD0 + 18;
    const DATA: u32 = EXIF_IFD + 18;
    let mut out = Vec::with_capacity(DATA as usize + comment.len());
    out.extend(b"MM");
    out.extend(42u16.to_be_bytes());
    out.extend(IFD0.to_be_bytes());
    let entry = |out: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: u32| {
        out.extend(1u16.to_be_bytes());
        out.extend(tag.to_be_bytes());
        out.extend(kind.to_be_bytes());
        out.extend(count.to_be_bytes());
        out.extend(value.to_be_bytes());
        // No next IFD.
        out.extend(0u32.to_be_bytes());
    };
    // Type 4 is LONG, type 7 UNDEFINED (bytes).
    entry(&mut out, EXIF_IFD_TAG, 4, 1, EXIF_IFD);
    entry(&mut out, USER_COMMENT_TAG, 7, comment.len() as u32, DATA);
    out.extend(comment);
    (out.len() <= MAX_EXIF_BYTES).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_the_comment_where_the_tags_say() {
        let exif = user_comment("Steps: 3").expect("short text fits");
        assert_eq!(&exif[..8], b"MM\0\x2a\0\0\0\x08");
        // The EXIF IFD's one entry: UserComment, 24 bytes at offset 44.
        assert_eq!(&exif[28..30], &USER_COMMENT_TAG.to_be_bytes());
        assert_eq!(&exif[32..36], &24u32.to_be_bytes());
        assert_eq!(&exif[36..40], &44u32.to_be_bytes());
        assert_eq!(&exif[44..52], UNICODE_PREFIX);
        assert_eq!(&exif[52..56], &[0, b'S', 0, b't']);
        assert_eq!(exif.len(), 68);
        assert_eq!(user_comment(&"x".repeat(40_000)), None);
    }
}
