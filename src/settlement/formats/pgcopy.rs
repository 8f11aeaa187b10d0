//! PostgreSQL's binary `COPY` format, written row by row: the bytes a
//! `COPY table (columns) FROM STDIN (FORMAT binary)` reads. The ingest path
//! sends its bulk rows this way (issue 13.3): the server stores each field as
//! it arrives, without parsing text or unpacking arrays, and inserts the rows
//! of one `COPY` together.
//!
//! The layout (PostgreSQL manual, "COPY", "Binary Format"): an 11-byte
//! signature, a flags word and a header-extension length (both 0); then per
//! row the number of fields (`i16`) and per field its length in bytes (`i32`,
//! -1 for NULL) followed by the value in the type's binary send format; then
//! the trailer, -1 as an `i16`. Integers are big-endian; a `timestamptz` is
//! microseconds since 2000-01-01 00:00 UTC as an `i64`.
//!
//! Each value's type must be the column's exact type (`int4` for `integer`,
//! `int8` for `bigint`): the server checks the length and refuses a
//! mismatch, so a wrong column list fails loudly rather than storing
//! something else.

use chrono::{DateTime, Utc};

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Rows in PostgreSQL's binary `COPY` format, `fields` values each.
#[derive(Debug)]
pub struct CopyRows {
    buf: Vec<u8>,
    fields: i16,
    in_row: i16,
    rows: usize,
}

impl CopyRows {
    /// An empty set of rows of `fields` columns, with room for about
    /// `bytes_hint` bytes.
    pub fn new(fields: i16, bytes_hint: usize) -> CopyRows {
        let mut buf = Vec::with_capacity(bytes_hint + 21);
        buf.extend_from_slice(SIGNATURE);
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
        buf.extend_from_slice(&0i32.to_be_bytes()); // no header extension
        CopyRows {
            buf,
            fields,
            in_row: fields,
            rows: 0,
        }
    }

    /// Starts the next row.
    ///
    /// # Panics
    /// If the previous row did not get exactly `fields` values (a bug in the
    /// caller's column list).
    pub fn row(&mut self) -> &mut CopyRows {
        self.check_row_complete();
        self.buf.extend_from_slice(&self.fields.to_be_bytes());
        self.in_row = 0;
        self.rows += 1;
        self
    }

    fn check_row_complete(&self) {
        assert_eq!(
            self.in_row, self.fields,
            "a COPY row needs {} values, it got {}",
            self.fields, self.in_row
        );
    }

    fn field(&mut self, bytes: &[u8]) -> &mut CopyRows {
        let len = i32::try_from(bytes.len()).expect("a COPY value is under 2 GiB");
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
        self.in_row += 1;
        self
    }

    /// SQL NULL.
    pub fn null(&mut self) -> &mut CopyRows {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
        self.in_row += 1;
        self
    }

    /// A `text` value.
    pub fn text(&mut self, s: &str) -> &mut CopyRows {
        self.field(s.as_bytes())
    }

    /// A `text` value, or NULL.
    pub fn opt_text(&mut self, s: Option<&str>) -> &mut CopyRows {
        match s {
            Some(s) => self.text(s),
            None => self.null(),
        }
    }

    /// An `integer` (`int4`) value.
    pub fn int4(&mut self, v: i32) -> &mut CopyRows {
        self.field(&v.to_be_bytes())
    }

    /// A `bigint` (`int8`) value.
    pub fn int8(&mut self, v: i64) -> &mut CopyRows {
        self.field(&v.to_be_bytes())
    }

    /// A `boolean` value.
    pub fn bool(&mut self, v: bool) -> &mut CopyRows {
        self.field(&[u8::from(v)])
    }

    /// A `timestamptz` value (microsecond precision, as PostgreSQL keeps it).
    pub fn timestamptz(&mut self, t: DateTime<Utc>) -> &mut CopyRows {
        self.field(&(t.timestamp_micros() - PG_EPOCH_MICROS).to_be_bytes())
    }

    /// A `timestamptz` value, or NULL.
    pub fn opt_timestamptz(&mut self, t: Option<DateTime<Utc>>) -> &mut CopyRows {
        match t {
            Some(t) => self.timestamptz(t),
            None => self.null(),
        }
    }

    /// How many rows were started.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The bytes to send, trailer included.
    ///
    /// # Panics
    /// If the last row did not get exactly `fields` values.
    pub fn finish(mut self) -> Vec<u8> {
        self.check_row_complete();
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn no_rows_is_header_and_trailer() {
        let bytes = CopyRows::new(3, 0).finish();
        assert_eq!(&bytes[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(&bytes[11..19], &[0u8; 8]);
        assert_eq!(&bytes[19..], &[0xff, 0xff]);
    }

    #[test]
    fn a_row_is_its_field_count_then_length_prefixed_values() {
        let t = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 1).unwrap();
        let mut rows = CopyRows::new(7, 64);
        rows.row()
            .text("ab")
            .opt_text(None)
            .int4(-2)
            .int8(300)
            .bool(true)
            .timestamptz(t)
            .opt_timestamptz(None);
        assert_eq!(rows.rows(), 1);
        let bytes = rows.finish();
        let mut want: Vec<u8> = vec![0, 7];
        want.extend([0, 0, 0, 2, b'a', b'b']);
        want.extend([0xff, 0xff, 0xff, 0xff]);
        want.extend([0, 0, 0, 4, 0xff, 0xff, 0xff, 0xfe]);
        want.extend([0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 1, 44]);
        want.extend([0, 0, 0, 1, 1]);
        // One second after PostgreSQL's epoch: 1 000 000 µs.
        want.extend([0, 0, 0, 8, 0, 0, 0, 0, 0, 0x0f, 0x42, 0x40]);
        want.extend([0xff, 0xff, 0xff, 0xff]);
        want.extend([0xff, 0xff]);
        assert_eq!(&bytes[19..], &want[..]);
    }

    #[test]
    fn timestamps_before_2000_are_negative() {
        let t = Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 59).unwrap();
        let mut rows = CopyRows::new(1, 16);
        rows.row().timestamptz(t);
        let bytes = rows.finish();
        assert_eq!(&bytes[25..33], &(-1_000_000i64).to_be_bytes());
    }

    #[test]
    #[should_panic(expected = "a COPY row needs 2 values, it got 1")]
    fn a_short_row_is_a_bug() {
        let mut rows = CopyRows::new(2, 16);
        rows.row().int4(1);
        rows.row();
    }
}
