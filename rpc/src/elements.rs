//! tutti's element vectors as RPC arguments and results, moved as raw bytes (one
//! copy in, one copy out, no per-element encoding).
//!
//! [`Elements<T>`] owns a `Vec<T>`, [`ElementSlice<T>`] borrows a slice to send
//! without copying it first; both encode as (dtype, bytes) and decode with a check
//! that the dtype is the one asked for. For a `Vec<T>` field of your own types, use
//! this module with serde's `with`: `#[serde(with = "tutti_rpc::elements")]`.
//!
//! This is the one place this crate imports tutti's element types from.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use tutti_core::{DataType, Element};

/// An owned vector of tutti elements, encoded as raw bytes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Elements<T: Element>(pub Vec<T>);

impl<T: Element> Elements<T> {
    /// The vector.
    pub fn into_inner(self) -> Vec<T> {
        self.0
    }
}

impl<T: Element> From<Vec<T>> for Elements<T> {
    fn from(v: Vec<T>) -> Self {
        Self(v)
    }
}

impl<T: Element> Deref for Elements<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T: Element> DerefMut for Elements<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.0
    }
}

impl<T: Element> Serialize for Elements<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize(&self.0, s)
    }
}

impl<'de, T: Element> Deserialize<'de> for Elements<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize(d).map(Elements)
    }
}

/// A borrowed slice of tutti elements to send as an argument or result (encodes
/// like [`Elements<T>`]; the receiver decodes it as `Elements<T>`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ElementSlice<'a, T: Element>(pub &'a [T]);

impl<T: Element> Serialize for ElementSlice<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize(self.0, s)
    }
}

struct RawBytes<'a>(&'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Serializes a slice of elements as (dtype code, raw bytes); for
/// `#[serde(with = "tutti_rpc::elements")]`.
pub fn serialize<T: Element, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
    let mut t = s.serialize_tuple(2)?;
    t.serialize_element(&(T::DTYPE as u8))?;
    t.serialize_element(&RawBytes(bytemuck::cast_slice(v)))?;
    t.end()
}

/// Deserializes what [`serialize`] wrote into a `Vec<T>`, checking the dtype; for
/// `#[serde(with = "tutti_rpc::elements")]`.
pub fn deserialize<'de, T: Element, D: Deserializer<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    d.deserialize_tuple(2, ElementsVisitor::<T>(PhantomData))
}

/// Copies raw little-endian element bytes into a vector, checking the length.
pub(crate) fn vec_from_bytes<T: Element>(b: &[u8]) -> Result<Vec<T>, String> {
    let size = std::mem::size_of::<T>();
    if !b.len().is_multiple_of(size) {
        return Err(format!(
            "{} bytes is not a whole number of {} elements ({size} bytes each)",
            b.len(),
            T::DTYPE
        ));
    }
    let mut v = vec![<T as bytemuck::Zeroable>::zeroed(); b.len() / size];
    bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(b);
    Ok(v)
}

struct ElementsVisitor<T>(PhantomData<T>);

impl<'de, T: Element> Visitor<'de> for ElementsVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a vector of {} elements (dtype code, bytes)", T::DTYPE)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let code: u8 = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        if code != T::DTYPE as u8 {
            let got = DataType::from_u8(code)
                .map(|d| d.name().to_string())
                .unwrap_or_else(|| format!("unknown dtype code {code}"));
            return Err(crate::codec::de_error(format!(
                "expected {} elements, got {got}",
                T::DTYPE
            )));
        }
        seq.next_element_seed(BytesSeed::<T>(PhantomData))?
            .ok_or_else(|| de::Error::invalid_length(1, &self))
    }
}

struct BytesSeed<T>(PhantomData<T>);

impl<'de, T: Element> DeserializeSeed<'de> for BytesSeed<T> {
    type Value = Vec<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_bytes(BytesVisitor::<T>(PhantomData))
    }
}

struct BytesVisitor<T>(PhantomData<T>);

impl<'de, T: Element> Visitor<'de> for BytesVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the bytes of {} elements", T::DTYPE)
    }

    fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Vec<T>, E> {
        vec_from_bytes(b).map_err(crate::codec::de_error)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        // Self-describing formats (JSON) write bytes as a sequence of numbers.
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(b) = seq.next_element::<u8>()? {
            bytes.push(b);
        }
        vec_from_bytes(&bytes).map_err(crate::codec::de_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16;
    use num_complex::Complex;

    fn round_trip<T: Element>(v: Vec<T>) {
        let bytes = postcard::to_stdvec(&ElementSlice(&v)).unwrap();
        // dtype code + varint length + raw bytes: no per-element encoding.
        assert!(bytes.len() <= 1 + 10 + std::mem::size_of_val(v.as_slice()));
        let back: Elements<T> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.0, v);
    }

    #[test]
    fn every_element_survives() {
        round_trip(
            (0..1000)
                .map(|i| i as f32 * 0.5 - 3.0)
                .collect::<Vec<f32>>(),
        );
        round_trip((0..777).map(|i| i64::MIN + i).collect::<Vec<i64>>());
        round_trip(
            (0..100)
                .map(|i| bf16::from_f32(i as f32))
                .collect::<Vec<_>>(),
        );
        round_trip(
            (0..100)
                .map(|i| Complex::new(i as f64, -(i as f64)))
                .collect::<Vec<_>>(),
        );
        round_trip(Vec::<u8>::new());
    }

    #[test]
    fn ragged_bytes_are_rejected() {
        let e = vec_from_bytes::<f32>(&[0u8; 7]).unwrap_err();
        assert_eq!(
            e,
            "7 bytes is not a whole number of float32 elements (4 bytes each)"
        );
    }
}
