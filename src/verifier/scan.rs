//! Reading a pass from a picture: decode a PNG or JPEG, find the QR codes in
//! it (rqrr, pure Rust) and return the blindpass payload text.

use std::path::Path;

use super::VerifierError;
use crate::protocol::qr::QR_PREFIX;

/// Reads the QR payload from an image file (PNG or JPEG).
pub fn payload_from_image_file(path: &Path) -> Result<String, VerifierError> {
    let bytes = std::fs::read(path).map_err(|source| VerifierError::Io {
        path: path.to_owned(),
        source,
    })?;
    payload_from_image_bytes(&bytes).map_err(|e| match e {
        ScanError::Decode(detail) => VerifierError::Image {
            path: path.to_owned(),
            detail,
        },
        ScanError::NoQrCode => VerifierError::NoQrCode(path.to_owned()),
    })
}

/// Why an image gave no payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// The bytes are not a PNG or JPEG image the decoder accepts.
    #[error("not a readable PNG or JPEG image: {0}")]
    Decode(String),
    /// No QR code in the image could be decoded.
    #[error("no readable QR code in the image")]
    NoQrCode,
}

/// Reads the QR payload from encoded image bytes (PNG or JPEG).
///
/// When the picture holds several QR codes, the first one whose text starts
/// with the blindpass prefix wins; failing that, the first readable one is
/// returned (and will be reported as malformed by the check, which says
/// more than "no QR code").
pub fn payload_from_image_bytes(bytes: &[u8]) -> Result<String, ScanError> {
    let image = image::load_from_memory(bytes)
        .map_err(|e| ScanError::Decode(e.to_string()))?
        .to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(image);
    let mut first_readable = None;
    for grid in prepared.detect_grids() {
        if let Ok((_meta, text)) = grid.decode() {
            if text.trim_start().starts_with(QR_PREFIX) {
                return Ok(text);
            }
            first_readable.get_or_insert(text);
        }
    }
    first_readable.ok_or(ScanError::NoQrCode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_decode_error_and_a_blank_image_has_no_code() {
        assert!(matches!(
            payload_from_image_bytes(b"not an image"),
            Err(ScanError::Decode(_))
        ));
        let blank = image::GrayImage::from_pixel(64, 64, image::Luma([255]));
        let mut png = Vec::new();
        blank
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        assert_eq!(payload_from_image_bytes(&png), Err(ScanError::NoQrCode));
    }
}
