//! The proto3 JSON mapping of the API's messages, driven by the compiled descriptors: no
//! hand-written struct stands between the JSON and the protobuf the gRPC services decode.

use admission_contract::pb;
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, MethodDescriptor,
    SerializeOptions,
};

/// The package every API service lives in.
const API_PACKAGE: &str = "byteor.admission.v1";

/// The descriptors of the API and of the `google.rpc` error details.
#[derive(Clone, Debug)]
pub struct Schema {
    pool: DescriptorPool,
}

/// The compiled descriptors do not load (a build defect, reported at start-up).
#[derive(Debug, thiserror::Error)]
#[error("cannot load the api descriptors for http/json: {0}")]
pub struct SchemaError(#[from] prost_reflect::DescriptorError);

/// Why a JSON body is not the RPC's request message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("is not a valid {message} json object (at {field}: {detail})")]
pub struct JsonError {
    /// The request message's name.
    pub message: String,
    /// The JSON path of the offending field (`environment.orgId`), or `body` for the whole.
    pub field: String,
    /// What the decoder found.
    pub detail: String,
}

/// Why an answer of the services has no JSON form (a defect, never the caller's doing).
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// The bytes are not the method's response message.
    #[error("does not decode as the response message: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The message could not be written as JSON.
    #[error("cannot be written as json: {0}")]
    Json(#[from] serde_json::Error),
}

// === impl Schema ===

impl Schema {
    /// Loads the API's descriptors and the error details rejections carry.
    pub fn load() -> Result<Self, SchemaError> {
        let mut pool = DescriptorPool::new();
        pool.decode_file_descriptor_set(pb::GOOGLE_RPC_FILE_DESCRIPTOR_SET)?;
        pool.decode_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)?;
        Ok(Self { pool })
    }

    /// The unary API method a request path (`/byteor.admission.v1.Service/Method`) names.
    pub fn method(&self, path: &str) -> Option<MethodDescriptor> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        if service.rsplit_once('.').map(|(package, _)| package) != Some(API_PACKAGE) {
            return None;
        }
        self.pool
            .get_service_by_name(service)?
            .methods()
            .find(|candidate| candidate.name() == method)
            .filter(|found| !found.is_client_streaming() && !found.is_server_streaming())
    }

    /// The protobuf encoding of the proto3 JSON `body` of a `message`.
    pub fn json_to_proto(message: &MessageDescriptor, body: &[u8]) -> Result<Vec<u8>, JsonError> {
        let error = |field: String, detail: String| JsonError {
            message: message.name().to_owned(),
            field,
            detail,
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(error(
                "body".into(),
                "the body is empty (send {} for a message without fields)".into(),
            ));
        }
        let mut json = serde_json::Deserializer::from_slice(body);
        let mut track = serde_path_to_error::Track::new();
        let tracked = serde_path_to_error::Deserializer::new(&mut json, &mut track);
        let decoded = DynamicMessage::deserialize_with_options(
            message.clone(),
            tracked,
            &DeserializeOptions::new(),
        );
        let decoded = match decoded {
            Ok(decoded) => decoded,
            Err(detail) => {
                let detail = detail.to_string();
                return Err(error(field_path(&track.path(), &detail), detail));
            }
        };
        json.end()
            .map_err(|detail| error("body".into(), detail.to_string()))?;
        Ok(decoded.encode_to_vec())
    }

    /// The proto3 JSON of the protobuf `bytes` of a `message`.
    pub fn proto_to_json(
        message: &MessageDescriptor,
        bytes: &[u8],
    ) -> Result<Vec<u8>, AnswerError> {
        let decoded = DynamicMessage::decode(message.clone(), bytes)?;
        let mut out = serde_json::Serializer::new(Vec::new());
        decoded.serialize_with_options(&mut out, &SerializeOptions::new())?;
        Ok(out.into_inner())
    }

    /// The proto3 JSON of a detail of type `type_name` (`google.rpc.ErrorInfo`), if the
    /// schema knows the type and the bytes decode.
    pub fn detail_to_json(&self, type_name: &str, bytes: &[u8]) -> Option<serde_json::Value> {
        let message = self.pool.get_message_by_name(type_name)?;
        let decoded = DynamicMessage::decode(message, bytes).ok()?;
        serde_json::to_value(&decoded).ok()
    }
}

/// The JSON path serde saw when decoding failed, down to the field an "unknown field" error
/// names; `body` when it failed at the top.
fn field_path(path: &serde_path_to_error::Path, detail: &str) -> String {
    let parent = match path.to_string() {
        text if text == "." || text.is_empty() => None,
        text => Some(text),
    };
    // prost-reflect's wording, and serde's.
    let unknown = detail
        .strip_prefix("unrecognized field name '")
        .and_then(|rest| rest.split_once('\''))
        .or_else(|| {
            detail
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split_once('`'))
        })
        .map(|(name, _)| name);
    match (parent, unknown) {
        (Some(parent), Some(name)) => format!("{parent}.{name}"),
        (None, Some(name)) => name.to_owned(),
        (Some(parent), None) => parent,
        (None, None) => "body".into(),
    }
}
