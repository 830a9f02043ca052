//! Showing a pass: the QR code of its payload as terminal text (Unicode half
//! blocks), as a PNG image, or as an SVG document. Error correction level M,
//! which for the 535-character payload is version 15 (77 × 77 modules).

use qrcode::render::{svg, unicode};
use qrcode::{EcLevel, QrCode};

use super::WalletError;

/// Pixels per QR module in PNG output: large enough for a phone camera
/// to read from a screen or a printout.
const PNG_MODULE_PX: u32 = 6;

fn code(payload: &str) -> Result<QrCode, WalletError> {
    QrCode::with_error_correction_level(payload.as_bytes(), EcLevel::M)
        .map_err(|e| WalletError::Qr(e.to_string()))
}

/// The QR code as lines of Unicode half blocks, two modules per character
/// cell vertically, with a quiet zone.
///
/// With `invert` (the default of the CLI) dark modules are drawn as blank
/// cells and light ones as blocks, which gives a dark-on-light code on a
/// terminal with a dark background.
pub fn render_terminal(payload: &str, invert: bool) -> Result<String, WalletError> {
    let code = code(payload)?;
    let mut renderer = code.render::<unicode::Dense1x2>();
    if invert {
        renderer
            .dark_color(unicode::Dense1x2::Light)
            .light_color(unicode::Dense1x2::Dark);
    }
    Ok(renderer.build())
}

/// The QR code as a PNG image (black on white, with a quiet zone).
pub fn render_png(payload: &str) -> Result<Vec<u8>, WalletError> {
    let code = code(payload)?;
    let image = code
        .render::<image::Luma<u8>>()
        .module_dimensions(PNG_MODULE_PX, PNG_MODULE_PX)
        .build();
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| WalletError::Qr(e.to_string()))?;
    Ok(png)
}

/// The QR code as an SVG document.
pub fn render_svg(payload: &str) -> Result<String, WalletError> {
    let code = code(payload)?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(256, 256)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

/// The QR version (size) the payload needs at level M.
pub fn version(payload: &str) -> Result<i16, WalletError> {
    match code(payload)?.version() {
        qrcode::Version::Normal(v) | qrcode::Version::Micro(v) => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::qr::encode_payload;
    use crate::protocol::token::{KeyId, NK, Token};

    fn payload() -> String {
        encode_payload(&Token {
            nonce: [1; 32],
            challenge_digest: [2; 32],
            token_key_id: KeyId([3; 32]),
            authenticator: vec![0xA5; NK],
        })
    }

    #[test]
    fn png_round_trips_through_the_scanner() {
        let png = render_png(&payload()).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert_eq!(
            crate::verifier::scan::payload_from_image_bytes(&png).unwrap(),
            payload()
        );
    }

    #[test]
    fn terminal_and_svg_forms_are_drawn() {
        let text = render_terminal(&payload(), true).unwrap();
        // Half-block characters and one line per two module rows.
        assert!(text.contains('█') || text.contains('▀') || text.contains('▄'));
        let lines = text.lines().count();
        let v = usize::try_from(version(&payload()).unwrap()).unwrap();
        let modules = 17 + 4 * v + 8; // with the 4-module quiet zone each side
        assert_eq!(lines, modules.div_ceil(2));
        let svg = render_svg(&payload()).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("<svg"));
    }

    #[test]
    fn the_payload_needs_version_15_at_level_m() {
        // 354 bytes are 531 base45 characters, 535 with the prefix: all in
        // the QR alphanumeric set, so 4 + 11 + 267 * 11 + 6 = 2958 bits.
        // Version 14-M holds 2920 data bits, version 15-M 3320.
        assert_eq!(payload().len(), 535);
        assert_eq!(version(&payload()).unwrap(), 15);
    }
}
