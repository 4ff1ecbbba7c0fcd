//! Archive formats for `?download=tar|zip`, as bytes: the headers of each member and the end
//! of the archive, written as the members go by. Pure code, no I/O: `archive_stream` walks the
//! tree and moves the file bytes.
//!
//! - tar: POSIX ustar; a name too long for ustar's two fields, or that is not UTF-8, goes in
//!   a pax extended header first (`path=`); names that are not UTF-8 as their bytes; a size
//!   past ustar's 8 GiB in GNU's base-256 form.
//! - zip: names in UTF-8 (bytes that are not UTF-8 written as `\xFF`); stored (no compression), CRC-32 and sizes in a data descriptor after each file's
//!   bytes, so no member is buffered; zip64 fields only where a size, an offset or the count
//!   needs them. The central directory is kept until the end: a few dozen bytes per member,
//!   whatever their size.

use std::fmt::Write as _;

use crate::http::server::listing::civil;
use crate::http::server::path::display_name;

/// The archive formats a directory can be downloaded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Tar,
    Zip,
}

impl Format {
    /// The format a request's query asks for with `download=tar` or `download=zip`.
    pub(crate) fn from_query(query: Option<&str>) -> Option<Self> {
        query?.split('&').find_map(|kv| match kv {
            "download=tar" => Some(Format::Tar),
            "download=zip" => Some(Format::Zip),
            _ => None,
        })
    }

    pub(crate) fn extension(self) -> &'static str {
        match self {
            Format::Tar => "tar",
            Format::Zip => "zip",
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Tar => "application/x-tar",
            Format::Zip => "application/zip",
        }
    }
}

/// One member of an archive: a directory or a regular file of `size` bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Member<'a> {
    /// `/`-separated path inside the archive, without a trailing `/`.
    pub(crate) path: &'a [u8],
    pub(crate) is_dir: bool,
    pub(crate) size: u64,
    /// Permission bits.
    pub(crate) mode: u32,
    /// Seconds since the Unix epoch.
    pub(crate) mtime: u64,
}

/// Writes an archive's framing around the members' bytes.
#[derive(Debug)]
pub(crate) enum Encoder {
    Tar,
    Zip(Box<ZipState>),
}

/// What a zip needs to remember while its members go by.
#[derive(Debug, Default)]
pub(crate) struct ZipState {
    /// Bytes of the archive written so far.
    offset: u64,
    /// The central directory, written at the end.
    central: Vec<u8>,
    entries: u64,
    /// The member being written: where its local header starts, and its CRC so far.
    current_offset: u64,
    crc: flate2::Crc,
}

const TAR_BLOCK: usize = 512;
const ZIP32_MAX: u64 = 0xFFFF_FFFF;
/// Version needed to extract: 2.0 (stored, data descriptor), 4.5 (zip64).
const ZIP_VERSION: u16 = 20;
const ZIP64_VERSION: u16 = 45;
/// General purpose flags: sizes in a data descriptor; name in UTF-8.
const ZIP_FLAG_DESCRIPTOR: u16 = 1 << 3;
const ZIP_FLAG_UTF8: u16 = 1 << 11;

impl Encoder {
    pub(crate) fn new(format: Format) -> Self {
        match format {
            Format::Tar => Encoder::Tar,
            Format::Zip => Encoder::Zip(Box::default()),
        }
    }

    /// The header(s) before `member`'s bytes.
    pub(crate) fn begin(&mut self, member: &Member<'_>, out: &mut Vec<u8>) {
        match self {
            Encoder::Tar => tar_header(member, out),
            Encoder::Zip(zip) => zip.local_header(member, out),
        }
    }

    /// `bytes` of the current member, which the caller sends right after.
    pub(crate) fn data(&mut self, bytes: &[u8]) {
        if let Encoder::Zip(zip) = self {
            zip.crc.update(bytes);
            zip.offset += bytes.len() as u64;
        }
    }

    /// What follows `member`'s bytes (all `member.size` of them).
    pub(crate) fn end(&mut self, member: &Member<'_>, out: &mut Vec<u8>) {
        match self {
            Encoder::Tar => {
                let rest = (member.size % TAR_BLOCK as u64) as usize;
                if !member.is_dir && rest != 0 {
                    out.resize(out.len() + TAR_BLOCK - rest, 0);
                }
            }
            Encoder::Zip(zip) => zip.descriptor_and_record(member, out),
        }
    }

    /// The end of the archive.
    pub(crate) fn finish(self, out: &mut Vec<u8>) {
        match self {
            // Two zero blocks end a tar.
            Encoder::Tar => out.resize(out.len() + 2 * TAR_BLOCK, 0),
            Encoder::Zip(zip) => zip.central_directory(out),
        }
    }
}

fn tar_header(member: &Member<'_>, out: &mut Vec<u8>) {
    let mut name = member.path.to_vec();
    if member.is_dir {
        name.push(b'/');
    }
    let split = ustar_split(&name);
    if split.is_none() {
        // pax: the exact name, whatever its length; readers take it over the header's. (The
        // bytes as they are, UTF-8 or not: GNU tar keeps bytes it cannot convert.)
        let mut records = Vec::new();
        pax_record(&mut records, b"path", &name);
        let pax = Member {
            path: b"././@PaxHeader",
            is_dir: false,
            size: records.len() as u64,
            mode: 0o644,
            mtime: member.mtime,
        };
        tar_block(&pax, b'x', (&[][..], &b"././@PaxHeader"[..]), out);
        out.extend_from_slice(&records);
        let rest = records.len() % TAR_BLOCK;
        if rest != 0 {
            out.resize(out.len() + TAR_BLOCK - rest, 0);
        }
    }
    // A name that does not fit is cut in the ustar fields (the pax record holds it whole).
    let (prefix, short) = split.unwrap_or((&[][..], &name[name.len().saturating_sub(100)..]));
    let kind = if member.is_dir { b'5' } else { b'0' };
    tar_block(member, kind, (prefix, short), out);
}

/// `name` split into ustar's prefix (155 bytes) and name (100 bytes) at a `/`, if it fits.
fn ustar_split(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= 100 {
        return Some((&[], name));
    }
    // A directory's trailing `/` stays with its name part.
    let body = name.strip_suffix(b"/").unwrap_or(name);
    body.iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'/' && i <= 155 && name.len() - i - 1 <= 100 && i > 0)
        .map(|(i, _)| (&name[..i], &name[i + 1..]))
        .next()
}

/// One pax record: `LEN KEY=VALUE\n`, where LEN counts the whole record, itself included.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len = len.to_string().len() + rest;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn tar_block(member: &Member<'_>, kind: u8, (prefix, name): (&[u8], &[u8]), out: &mut Vec<u8>) {
    let mut block = [0u8; TAR_BLOCK];
    block[..name.len()].copy_from_slice(name);
    octal(&mut block[100..108], u64::from(member.mode & 0o7777));
    octal(&mut block[108..116], 0);
    octal(&mut block[116..124], 0);
    let size = if member.is_dir { 0 } else { member.size };
    if size < 0o777_7777_7777 {
        octal(&mut block[124..136], size);
    } else {
        // GNU base-256: the top bit of the first byte set, then the size big-endian.
        block[124] = 0x80;
        block[128..136].copy_from_slice(&size.to_be_bytes());
    }
    octal(&mut block[136..148], member.mtime.min(0o777_7777_7777));
    block[148..156].fill(b' ');
    block[156] = kind;
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    block[345..345 + prefix.len()].copy_from_slice(prefix);
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    octal(&mut block[148..155], u64::from(sum));
    block[155] = b' ';
    out.extend_from_slice(&block);
}

/// `value` in octal, zero-padded, NUL-terminated, filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let mut text = String::with_capacity(field.len());
    let _ = write!(text, "{value:0width$o}", width = field.len() - 1);
    let digits = text.as_bytes();
    let len = field.len();
    field[..len - 1].copy_from_slice(&digits[digits.len() - (len - 1)..]);
    field[len - 1] = 0;
}

/// DOS time and date (local time is unknown here: UTC), from 1980 on.
fn dos_time(mtime: u64) -> (u16, u16) {
    let (year, month, day, hour, minute, second) = civil(mtime);
    if year < 1980 {
        return (0, 1 << 5 | 1);
    }
    let year = (year - 1980).min(127) as u16;
    let time = (hour as u16) << 11 | (minute as u16) << 5 | (second as u16 / 2);
    let date = year << 9 | (month as u16) << 5 | day as u16;
    (time, date)
}

fn u16le(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn u32le(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn u64le(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

impl ZipState {
    fn flags(member: &Member<'_>) -> u16 {
        if member.is_dir {
            ZIP_FLAG_UTF8
        } else {
            ZIP_FLAG_UTF8 | ZIP_FLAG_DESCRIPTOR
        }
    }

    /// The member's name in the zip: always UTF-8 (flagged so), as a zip name is text (UTF-8
    /// or CP437, nothing else); bytes that are not UTF-8 are written as `\xFF`, as the listing
    /// shows them, rather than read as CP437 letters by unzip.
    fn name(member: &Member<'_>) -> Vec<u8> {
        let mut name = match std::str::from_utf8(member.path) {
            Ok(text) => text.as_bytes().to_vec(),
            Err(_) => member
                .path
                .split(|&b| b == b'/')
                .map(display_name)
                .collect::<Vec<_>>()
                .join("/")
                .into_bytes(),
        };
        if member.is_dir {
            name.push(b'/');
        }
        name
    }

    fn local_header(&mut self, member: &Member<'_>, out: &mut Vec<u8>) {
        let start = out.len();
        let name = Self::name(member);
        let big = member.size >= ZIP32_MAX;
        let (time, date) = dos_time(member.mtime);
        u32le(out, 0x0403_4b50);
        u16le(out, if big { ZIP64_VERSION } else { ZIP_VERSION });
        u16le(out, Self::flags(member));
        u16le(out, 0); // stored
        u16le(out, time);
        u16le(out, date);
        // CRC and sizes follow the bytes, in the data descriptor.
        u32le(out, 0);
        let size_field = if big { u32::MAX } else { 0 };
        u32le(out, size_field);
        u32le(out, size_field);
        u16le(out, name.len() as u16);
        u16le(out, if big { 20 } else { 0 });
        out.extend_from_slice(&name);
        if big {
            u16le(out, 0x0001);
            u16le(out, 16);
            u64le(out, 0);
            u64le(out, 0);
        }
        self.current_offset = self.offset;
        self.offset += (out.len() - start) as u64;
        self.crc = flate2::Crc::new();
    }

    fn descriptor_and_record(&mut self, member: &Member<'_>, out: &mut Vec<u8>) {
        let start = out.len();
        let crc = self.crc.sum();
        let size = if member.is_dir { 0 } else { member.size };
        let big = size >= ZIP32_MAX;
        if !member.is_dir {
            u32le(out, 0x0807_4b50);
            u32le(out, crc);
            if big {
                u64le(out, size);
                u64le(out, size);
            } else {
                u32le(out, size as u32);
                u32le(out, size as u32);
            }
        }
        self.offset += (out.len() - start) as u64;

        // Its central directory record, for the end.
        let name = Self::name(member);
        let far = self.current_offset >= ZIP32_MAX;
        let mut extra = Vec::new();
        if big || far {
            let mut fields = Vec::new();
            if big {
                u64le(&mut fields, size);
                u64le(&mut fields, size);
            }
            if far {
                u64le(&mut fields, self.current_offset);
            }
            u16le(&mut extra, 0x0001);
            u16le(&mut extra, fields.len() as u16);
            extra.extend_from_slice(&fields);
        }
        let needs = if big || far {
            ZIP64_VERSION
        } else {
            ZIP_VERSION
        };
        let (time, date) = dos_time(member.mtime);
        let c = &mut self.central;
        u32le(c, 0x0201_4b50);
        u16le(c, 3 << 8 | ZIP64_VERSION); // made by Unix, spec 4.5
        u16le(c, needs);
        u16le(c, Self::flags(member));
        u16le(c, 0);
        u16le(c, time);
        u16le(c, date);
        u32le(c, crc);
        let size32 = if big { u32::MAX } else { size as u32 };
        u32le(c, size32);
        u32le(c, size32);
        u16le(c, name.len() as u16);
        u16le(c, extra.len() as u16);
        u16le(c, 0); // comment
        u16le(c, 0); // disk
        u16le(c, 0); // internal attributes
        let kind = if member.is_dir { 0o040_000 } else { 0o100_000 };
        let dos_dir = if member.is_dir { 0x10 } else { 0 };
        u32le(c, (kind | (member.mode & 0o7777)) << 16 | dos_dir);
        u32le(
            c,
            if far {
                u32::MAX
            } else {
                self.current_offset as u32
            },
        );
        c.extend_from_slice(&name);
        c.extend_from_slice(&extra);
        self.entries += 1;
    }

    fn central_directory(self, out: &mut Vec<u8>) {
        let start = self.offset;
        let len = self.central.len() as u64;
        out.extend_from_slice(&self.central);
        let end = start + len;
        let needs_zip64 = self.entries >= 0xFFFF || start >= ZIP32_MAX || len >= ZIP32_MAX;
        if needs_zip64 {
            u32le(out, 0x0606_4b50);
            u64le(out, 44); // size of the rest of this record
            u16le(out, 3 << 8 | ZIP64_VERSION);
            u16le(out, ZIP64_VERSION);
            u32le(out, 0);
            u32le(out, 0);
            u64le(out, self.entries);
            u64le(out, self.entries);
            u64le(out, len);
            u64le(out, start);
            // The locator of the record above.
            u32le(out, 0x0706_4b50);
            u32le(out, 0);
            u64le(out, end);
            u32le(out, 1);
        }
        u32le(out, 0x0605_4b50);
        u16le(out, 0);
        u16le(out, 0);
        let count = self.entries.min(0xFFFF) as u16;
        u16le(out, count);
        u16le(out, count);
        u32le(out, len.min(ZIP32_MAX) as u32);
        u32le(out, start.min(ZIP32_MAX) as u32);
        u16le(out, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(path: &[u8], size: u64) -> Member<'_> {
        Member {
            path,
            is_dir: false,
            size,
            mode: 0o644,
            mtime: 1_700_000_000,
        }
    }

    #[test]
    fn the_query_names_the_format() {
        assert_eq!(Format::from_query(Some("download=tar")), Some(Format::Tar));
        assert_eq!(
            Format::from_query(Some("a=1&download=zip")),
            Some(Format::Zip)
        );
        assert_eq!(Format::from_query(Some("download=rar")), None);
        assert_eq!(Format::from_query(None), None);
    }

    #[test]
    fn a_tar_header_is_one_checked_ustar_block() {
        let mut out = Vec::new();
        let mut tar = Encoder::new(Format::Tar);
        tar.begin(&member(b"dir/a.txt", 5), &mut out);
        assert_eq!(out.len(), 512);
        assert_eq!(&out[..9], b"dir/a.txt");
        assert_eq!(&out[124..136], b"00000000005\0");
        assert_eq!(&out[257..265], b"ustar\x0000");
        let sum: u32 = out
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u32::from(b)
                }
            })
            .sum();
        let written = std::str::from_utf8(&out[148..154]).unwrap();
        assert_eq!(u32::from_str_radix(written, 8).unwrap(), sum);
        out.extend_from_slice(b"hello");
        tar.end(&member(b"dir/a.txt", 5), &mut out);
        assert_eq!(out.len(), 1024);
        tar.finish(&mut out);
        assert_eq!(out.len(), 2048);
    }

    #[test]
    fn long_names_go_in_a_pax_header_and_bytes_stay_bytes() {
        let long = [b'x'; 150];
        let mut out = Vec::new();
        Encoder::Tar.begin(&member(&long, 0), &mut out);
        assert_eq!(out[156], b'x');
        assert_eq!(out.len(), 3 * 512);
        assert!(out[512..].starts_with(b"160 path=xxx"));
        let mut out = Vec::new();
        Encoder::Tar.begin(&member(b"bad\xff", 0), &mut out);
        assert_eq!((out.len(), &out[..5]), (512, &b"bad\xff\0"[..]));
        // A long path that splits at a `/` needs no pax header.
        let mut split = vec![b'd'; 120];
        split.extend_from_slice(b"/file");
        let mut out = Vec::new();
        Encoder::Tar.begin(&member(&split, 0), &mut out);
        assert_eq!(out.len(), 512);
        assert_eq!(&out[..5], b"file\0");
        assert_eq!(out[345..465], split[..120]);
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        for len in [1, 5, 90, 91, 92, 993, 994, 995] {
            let mut out = Vec::new();
            pax_record(&mut out, b"path", &vec![b'a'; len]);
            let (digits, _) = out.split_at(out.iter().position(|&b| b == b' ').unwrap());
            let told: usize = std::str::from_utf8(digits).unwrap().parse().unwrap();
            assert_eq!(told, out.len(), "value of {len}");
        }
    }

    #[test]
    fn zip_sizes_and_offsets_add_up() {
        let mut out = Vec::new();
        let mut zip = Encoder::new(Format::Zip);
        let a = member(b"a.txt", 3);
        zip.begin(&a, &mut out);
        out.extend_from_slice(b"abc");
        zip.data(b"abc");
        zip.end(&a, &mut out);
        zip.finish(&mut out);
        // local header 30 + 5, data 3, descriptor 16, central 46 + 5, end 22.
        assert_eq!(out.len(), 35 + 3 + 16 + 51 + 22);
        let end = &out[out.len() - 22..];
        assert_eq!(&end[..4], &0x0605_4b50u32.to_le_bytes());
        assert_eq!(u32::from_le_bytes(end[16..20].try_into().unwrap()), 54);
        let crc = u32::from_le_bytes(out[42..46].try_into().unwrap());
        assert_eq!(crc, 0x3524_41C2); // CRC-32 of "abc"
    }
}
