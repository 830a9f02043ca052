//! Reading a pass from a picture: decode a PNG or JPEG, find the QR codes in
//! it (rqrr, pure Rust) and return the blindpass payload text.
//!
//! A picture is outside input, and the QR search costs far more than its
//! size suggests (rqrr copies the image for every candidate group of finder
//! patterns, so a noisy photo costs roughly the square of its pixels). The
//! scan is therefore bounded three ways: the file's bytes and the header's
//! dimensions are checked before anything is decoded, the decoder runs
//! under `image`'s allocation limits, and the search runs on downscaled
//! copies (a small one first) on a worker thread that is given up on at a
//! deadline. A camera photo of a pass scans in well under a second.

use std::path::Path;
use std::time::{Duration, Instant};

use image::GrayImage;

use super::VerifierError;
use crate::protocol::qr::QR_PREFIX;

/// Largest image file accepted, in bytes.
pub const MAX_IMAGE_BYTES: usize = 32 * 1024 * 1024;
/// Largest image accepted, in pixels (width × height) — a 40 MP camera.
pub const MAX_PIXELS: u64 = 40_000_000;
/// Most memory the decoder may allocate at once.
const MAX_DECODE_ALLOC_BYTES: u64 = 256 * 1024 * 1024;
/// The longest side of each search attempt, smallest first: a pass fills
/// much of a photo, so the small copy usually suffices and costs little.
const ATTEMPT_SIDES: [u32; 2] = [1024, 2048];
/// How long a scan may take before it is given up.
pub const SCAN_DEADLINE: Duration = Duration::from_secs(10);

/// Reads the QR payload from an image file (PNG or JPEG).
pub fn payload_from_image_file(path: &Path) -> Result<String, VerifierError> {
    let size = std::fs::metadata(path)
        .map_err(|source| VerifierError::Io {
            path: path.to_owned(),
            source,
        })?
        .len();
    if size > MAX_IMAGE_BYTES as u64 {
        return Err(image_error(path, ScanError::TooManyBytes(size)));
    }
    let bytes = std::fs::read(path).map_err(|source| VerifierError::Io {
        path: path.to_owned(),
        source,
    })?;
    payload_from_image_bytes(&bytes).map_err(|e| image_error(path, e))
}

fn image_error(path: &Path, err: ScanError) -> VerifierError {
    match err {
        ScanError::NoQrCode => VerifierError::NoQrCode(path.to_owned()),
        ScanError::TooManyBytes(_) | ScanError::TooLarge { .. } | ScanError::TimedOut(_) => {
            VerifierError::ImageTooLarge {
                path: path.to_owned(),
                detail: err.to_string(),
            }
        }
        ScanError::Decode(detail) => VerifierError::Image {
            path: path.to_owned(),
            detail,
        },
    }
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
    /// The file is larger than [`MAX_IMAGE_BYTES`].
    #[error("image file too large: {0} bytes, limit {MAX_IMAGE_BYTES}")]
    TooManyBytes(u64),
    /// The image has more pixels than [`MAX_PIXELS`] (or needs more
    /// memory to decode than the decoder may allocate).
    #[error("image too large: {width}×{height}, limit {} MP", MAX_PIXELS / 1_000_000)]
    TooLarge {
        /// Width in pixels, from the header.
        width: u32,
        /// Height in pixels, from the header.
        height: u32,
    },
    /// The search for a code ran past its deadline.
    #[error("image scan gave up after {} s", .0.as_secs())]
    TimedOut(Duration),
}

/// Reads the QR payload from encoded image bytes (PNG or JPEG), within
/// [`SCAN_DEADLINE`].
///
/// When the picture holds several QR codes, the first one whose text starts
/// with the blindpass prefix wins; failing that, the first readable one is
/// returned (and will be reported as malformed by the check, which says
/// more than "no QR code").
pub fn payload_from_image_bytes(bytes: &[u8]) -> Result<String, ScanError> {
    payload_within(bytes, SCAN_DEADLINE)
}

/// [`payload_from_image_bytes`] with a chosen time budget.
pub fn payload_within(bytes: &[u8], budget: Duration) -> Result<String, ScanError> {
    let deadline = Instant::now() + budget;
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(ScanError::TooManyBytes(bytes.len() as u64));
    }
    let image = decode_bounded(bytes)?;
    let mut scanned_side = 0;
    for side in ATTEMPT_SIDES {
        let copy = downscaled(&image, side);
        let copy_side = copy.width().max(copy.height());
        if copy_side <= scanned_side {
            // The image is smaller than this attempt: already scanned whole.
            break;
        }
        scanned_side = copy_side;
        if Instant::now() >= deadline {
            return Err(ScanError::TimedOut(budget));
        }
        if let Some(text) =
            search_until(copy, deadline).map_err(|()| ScanError::TimedOut(budget))?
        {
            return Ok(text);
        }
    }
    Err(ScanError::NoQrCode)
}

/// Decodes to grey after checking the header's dimensions.
fn decode_bounded(bytes: &[u8]) -> Result<GrayImage, ScanError> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ScanError::Decode(e.to_string()))?;
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| ScanError::Decode(e.to_string()))?;
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ScanError::TooLarge { width, height });
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ScanError::Decode(e.to_string()))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(MAX_DECODE_ALLOC_BYTES);
    reader.limits(limits);
    match reader.decode() {
        Ok(image) => Ok(image.to_luma8()),
        Err(image::ImageError::Limits(_)) => Err(ScanError::TooLarge { width, height }),
        Err(e) => Err(ScanError::Decode(e.to_string())),
    }
}

/// A copy whose longer side is at most `side` (the image itself if smaller).
fn downscaled(image: &GrayImage, side: u32) -> GrayImage {
    let longest = image.width().max(image.height());
    if longest <= side {
        return image.clone();
    }
    let scale = f64::from(side) / f64::from(longest);
    let width = ((f64::from(image.width()) * scale).round() as u32).max(1);
    let height = ((f64::from(image.height()) * scale).round() as u32).max(1);
    image::imageops::thumbnail(image, width, height)
}

/// Searches `image` on a worker thread; `Err(())` if the deadline passes
/// first. The worker is then left to finish on its own: its cost is
/// bounded by the size of the downscaled copy, and nothing waits for it.
fn search_until(image: GrayImage, deadline: Instant) -> Result<Option<String>, ()> {
    let (answer, result) = std::sync::mpsc::channel();
    let worker = std::thread::Builder::new()
        .name("blindpass-qr-scan".into())
        .spawn(move || {
            let _ = answer.send(search(image));
        });
    if worker.is_err() {
        // No thread to spare: nothing found within the budget.
        return Err(());
    }
    let left = deadline.saturating_duration_since(Instant::now());
    result.recv_timeout(left).map_err(|_| ())
}

/// The first blindpass payload in `image`, else the first readable text.
fn search(image: GrayImage) -> Option<String> {
    let mut prepared = rqrr::PreparedImage::prepare(image);
    let mut first_readable = None;
    for grid in prepared.detect_grids() {
        if let Ok((_meta, text)) = grid.decode() {
            if text.trim_start().starts_with(QR_PREFIX) {
                return Some(text);
            }
            first_readable.get_or_insert(text);
        }
    }
    first_readable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(image: &GrayImage) -> Vec<u8> {
        let mut png = Vec::new();
        image
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        png
    }

    #[test]
    fn garbage_is_a_decode_error_and_a_blank_image_has_no_code() {
        assert!(matches!(
            payload_from_image_bytes(b"not an image"),
            Err(ScanError::Decode(_))
        ));
        let blank = GrayImage::from_pixel(64, 64, image::Luma([255]));
        assert_eq!(
            payload_from_image_bytes(&png(&blank)),
            Err(ScanError::NoQrCode)
        );
    }

    /// A PNG whose header claims 16000×16000 (a 256 MP image whose pixel
    /// data would take hundreds of MiB) is refused from the header alone.
    #[test]
    fn a_huge_png_header_is_refused_before_decoding() {
        let mut bytes = png(&GrayImage::from_pixel(8, 8, image::Luma([255])));
        // IHDR is the first chunk: 8 signature bytes, 4 length, 4 type,
        // then width and height, then the chunk's CRC over type and data.
        bytes[16..20].copy_from_slice(&16_000u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&16_000u32.to_be_bytes());
        let crc = crc32(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        let started = Instant::now();
        let err = payload_from_image_bytes(&bytes).unwrap_err();
        assert_eq!(
            err,
            ScanError::TooLarge {
                width: 16_000,
                height: 16_000
            }
        );
        assert_eq!(err.to_string(), "image too large: 16000×16000, limit 40 MP");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn too_many_bytes_are_refused_unread() {
        let bytes = vec![0u8; MAX_IMAGE_BYTES + 1];
        assert!(matches!(
            payload_from_image_bytes(&bytes),
            Err(ScanError::TooManyBytes(_))
        ));
    }

    /// A noise JPEG of a camera's size (3000×2000) is the worst case for
    /// the QR search; it must end within the deadline, with no code found
    /// or a time-out, not minutes later.
    #[test]
    fn a_noise_photo_scans_within_the_deadline() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let noise = GrayImage::from_fn(3000, 2000, |_, _| {
            // xorshift: cheap, deterministic noise.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            image::Luma([(state >> 56) as u8])
        });
        let mut jpeg = Vec::new();
        noise
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        let budget = Duration::from_secs(3);
        let started = Instant::now();
        let result = payload_within(&jpeg, budget);
        let took = started.elapsed();
        assert!(
            matches!(result, Err(ScanError::NoQrCode | ScanError::TimedOut(_))),
            "{result:?}"
        );
        // Decoding and downscaling come on top of the budget; generous for
        // a loaded machine, far below the minutes an unbounded scan takes.
        assert!(took < budget + Duration::from_secs(10), "took {took:?}");
    }

    /// CRC-32 (ISO-HDLC, as PNG uses), bit by bit: tests only.
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for byte in data {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
