//! Pure file formats, no database and no clock: Bankgirot's BgMax payment
//! file (parser), OCR references, the bytes of a PDF document, and
//! PostgreSQL's binary `COPY` rows (the ingest path's bulk inserts).

pub mod bgmax;
pub mod ocr;
pub mod pdf;
pub mod pgcopy;
