//! Pure file formats, no database and no clock: Bankgirot's BgMax payment
//! file (parser), OCR references, and the bytes of a PDF document.

pub mod bgmax;
pub mod ocr;
pub mod pdf;
