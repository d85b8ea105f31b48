//! The modality tag: which kind of input a payload, an encoder, a metric series or a stored
//! vector belongs to. The one list of modalities; everything that names them goes through it.

use std::fmt;
use std::str::FromStr;

use super::pb;

/// The kinds of input bindery knows about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Modality {
    /// UTF-8 text.
    Text,
    /// Encoded still image.
    Image,
    /// Encoded audio file.
    Audio,
    /// 3D point cloud.
    PointCloud,
    /// Depth map.
    Depth,
    /// Thermal image.
    Thermal,
    /// Inertial measurement unit series.
    Imu,
    /// Encoded video file.
    Video,
}

/// A name that is not a modality (carries the name, for the message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown modality {0:?} (known: text, image, audio, point_cloud, depth, thermal, imu, video)")]
pub struct UnknownModality(pub String);

impl Modality {
    /// Every modality, in the order of the protobuf enum.
    pub const ALL: [Modality; 8] = [
        Modality::Text,
        Modality::Image,
        Modality::Audio,
        Modality::PointCloud,
        Modality::Depth,
        Modality::Thermal,
        Modality::Imu,
        Modality::Video,
    ];

    /// Lower-case name used in messages, metrics, the manifest, stored records and the
    /// protobuf `Input` field of the same modality.
    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Text => "text",
            Modality::Image => "image",
            Modality::Audio => "audio",
            Modality::PointCloud => "point_cloud",
            Modality::Depth => "depth",
            Modality::Thermal => "thermal",
            Modality::Imu => "imu",
            Modality::Video => "video",
        }
    }

    /// The protobuf enum value.
    pub fn to_pb(self) -> pb::Modality {
        match self {
            Modality::Text => pb::Modality::Text,
            Modality::Image => pb::Modality::Image,
            Modality::Audio => pb::Modality::Audio,
            Modality::PointCloud => pb::Modality::PointCloud,
            Modality::Depth => pb::Modality::Depth,
            Modality::Thermal => pb::Modality::Thermal,
            Modality::Imu => pb::Modality::Imu,
            Modality::Video => pb::Modality::Video,
        }
    }

    /// The modality of a protobuf enum value: `Ok(None)` for `MODALITY_UNSPECIFIED`, `Err` with
    /// the raw value for one this build does not know.
    pub fn from_pb(value: i32) -> Result<Option<Modality>, i32> {
        match pb::Modality::try_from(value) {
            Ok(pb::Modality::Unspecified) => Ok(None),
            Ok(known) => Ok(Modality::ALL.into_iter().find(|m| m.to_pb() == known)),
            Err(_) => Err(value),
        }
    }

    /// The modality of a protobuf input's payload: a media URL's declared one (`None` when it
    /// is unset or unknown).
    pub fn of_input(payload: &pb::input::Payload) -> Option<Modality> {
        Some(match payload {
            pb::input::Payload::Text(_) => Modality::Text,
            pb::input::Payload::Image(_) => Modality::Image,
            pb::input::Payload::Audio(_) => Modality::Audio,
            pb::input::Payload::PointCloud(_) => Modality::PointCloud,
            pb::input::Payload::DepthMap(_) => Modality::Depth,
            pb::input::Payload::ThermalImage(_) => Modality::Thermal,
            pb::input::Payload::Imu(_) => Modality::Imu,
            pb::input::Payload::Video(_) => Modality::Video,
            pb::input::Payload::MediaUrl(url) => return Modality::from_pb(url.modality).ok().flatten(),
        })
    }
}

impl fmt::Display for Modality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Modality {
    type Err = UnknownModality;

    /// Parses [`Modality::as_str`] names exactly (stored records and manifests use them).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Modality::ALL
            .into_iter()
            .find(|m| m.as_str() == name)
            .ok_or_else(|| UnknownModality(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_protobuf_values_round_trip_for_every_modality() {
        for m in Modality::ALL {
            assert_eq!(m.as_str().parse::<Modality>(), Ok(m));
            assert_eq!(Modality::from_pb(m.to_pb() as i32), Ok(Some(m)));
        }
        assert_eq!(Modality::from_pb(0), Ok(None));
        assert_eq!(Modality::from_pb(99), Err(99));
        assert_eq!("Text".parse::<Modality>(), Err(UnknownModality("Text".into())));
    }

    #[test]
    fn every_protobuf_modality_but_unspecified_is_listed() {
        // A new enum value in the proto must be added to `ALL`: prost's enum has one more value
        // than ALL (UNSPECIFIED), in order.
        let mut values = (0..32).filter_map(|v| pb::Modality::try_from(v).ok()).collect::<Vec<_>>();
        assert_eq!(values.remove(0), pb::Modality::Unspecified);
        assert_eq!(values, Modality::ALL.map(Modality::to_pb).to_vec());
    }
}
