//! Just enough protobuf to read and write ONNX files field by field: copy what is not touched,
//! rewrite what is (the graph's nodes, initializers and outputs), with no ONNX crate. Used by
//! `export` (a bundle as one graph) and `unfreeze` (a trained tail's weights written back).

/// One field of a message: its number and payload.
pub enum Field<'a> {
    /// Wire type 0: field number, value.
    Varint(u32, u64),
    /// Wire type 1: field number, 8 bytes.
    Fixed64(u32, &'a [u8]),
    /// Wire type 2 (bytes, string, message, packed): field number, payload.
    Bytes(u32, &'a [u8]),
    /// Wire type 5: field number, 4 bytes.
    Fixed32(u32, &'a [u8]),
}

/// The varints of a packed repeated field's payload.
pub fn packed_varints(buf: &[u8]) -> Result<Vec<u64>, String> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        out.push(read_varint(buf, &mut pos)?);
    }
    Ok(out)
}

impl Field<'_> {
    /// Writes the field back as it was read.
    pub fn write(&self, out: &mut Vec<u8>) {
        match *self {
            Field::Varint(n, v) => varint_field(out, n, v),
            Field::Fixed64(n, b) => {
                key(out, n, 1);
                out.extend_from_slice(b);
            }
            Field::Bytes(n, b) => bytes(out, n, b),
            Field::Fixed32(n, b) => {
                key(out, n, 5);
                out.extend_from_slice(b);
            }
        }
    }
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

/// The fields of one message, in order.
pub fn fields(buf: &[u8]) -> Result<Vec<Field<'_>>, String> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let k = read_varint(buf, &mut pos)?;
        let (n, wire) = ((k >> 3) as u32, k & 7);
        let take = |pos: &mut usize, len: usize| -> Result<&[u8], String> {
            let end = pos
                .checked_add(len)
                .filter(|&e| e <= buf.len())
                .ok_or("truncated field")?;
            let s = &buf[*pos..end];
            *pos = end;
            Ok(s)
        };
        out.push(match wire {
            0 => Field::Varint(n, read_varint(buf, &mut pos)?),
            1 => Field::Fixed64(n, take(&mut pos, 8)?),
            2 => {
                let len = read_varint(buf, &mut pos)? as usize;
                Field::Bytes(n, take(&mut pos, len)?)
            }
            5 => Field::Fixed32(n, take(&mut pos, 4)?),
            w => return Err(format!("unsupported wire type {w}")),
        });
    }
    Ok(out)
}

fn key(out: &mut Vec<u8>, n: u32, wire: u64) {
    varint(out, (u64::from(n) << 3) | wire);
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A varint field.
pub fn varint_field(out: &mut Vec<u8>, n: u32, v: u64) {
    key(out, n, 0);
    varint(out, v);
}

/// A length-delimited field (bytes, string or message).
pub fn bytes(out: &mut Vec<u8>, n: u32, b: &[u8]) {
    key(out, n, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A float32 TensorProto.
pub fn tensor(name: &str, dims: &[i64], data: &[f32]) -> Vec<u8> {
    let mut t = Vec::with_capacity(data.len() * 4 + 64);
    for &d in dims {
        varint_field(&mut t, 1, d as u64);
    }
    varint_field(&mut t, 2, 1); // FLOAT
    bytes(&mut t, 8, name.as_bytes());
    let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    bytes(&mut t, 9, &raw);
    t
}

/// A ValueInfoProto of a float32 `[N, k]` tensor, `N` dynamic.
pub fn value_info(name: &str, k: i64) -> Vec<u8> {
    let mut dim_n = Vec::new();
    bytes(&mut dim_n, 2, b"N");
    let mut dim_k = Vec::new();
    varint_field(&mut dim_k, 1, k as u64);
    let mut shape = Vec::new();
    bytes(&mut shape, 1, &dim_n);
    bytes(&mut shape, 1, &dim_k);
    let mut tensor = Vec::new();
    varint_field(&mut tensor, 1, 1); // FLOAT
    bytes(&mut tensor, 2, &shape);
    let mut ty = Vec::new();
    bytes(&mut ty, 1, &tensor);
    let mut vi = Vec::new();
    bytes(&mut vi, 1, name.as_bytes());
    bytes(&mut vi, 2, &ty);
    vi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_byte_for_byte() {
        let mut m = Vec::new();
        varint_field(&mut m, 1, 300);
        bytes(&mut m, 7, b"graph");
        m.extend_from_slice(&[0x1d, 1, 2, 3, 4]); // field 3, fixed32
        let mut again = Vec::new();
        for f in fields(&m).unwrap() {
            f.write(&mut again);
        }
        assert_eq!(again, m);
        assert!(
            fields(&[0x0a, 5, 1]).is_err(),
            "a truncated field is an error"
        );
    }
}
