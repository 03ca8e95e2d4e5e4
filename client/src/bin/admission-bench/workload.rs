//! What the phases call: the workloads, their requests (each with a fresh `request_id`, and for
//! `admit-prod` a credential signed before the clock starts), and how an answer is counted.

use std::{
    num::NonZeroUsize,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use admission_client::{Rejection, SpecHash, pb};
use admission_contract::{
    credential::{Claims, SigningKey},
    reason::code_name,
};
use clap::ValueEnum;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    BenchError,
    plan::{CredentialMode, Plan, Target},
};

/// What one phase calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// `grpc.health.v1.Health/Check`: the transport alone, the baseline of the others.
    Health,
    /// `DeployAdmission/Admit` to an environment that admits without a credential.
    AdmitDev,
    /// `DeployAdmission/Admit` to an environment that requires an approval, with a credential.
    AdmitProd,
    /// `DeployAdmission/Preview` of a deploy that requires an approval (evaluated and audited).
    Preview,
}

/// The requests of one phase, by call index: warmup calls first, then the measured ones.
#[derive(Debug)]
pub struct Calls {
    workload: Workload,
    request_id_prefix: String,
    template: pb::DeployRequest,
    credentials: Credentials,
}

/// One request, ready to send.
#[derive(Clone, Debug)]
pub enum Call {
    /// `Health/Check`.
    Health,
    /// `DeployAdmission/Admit`.
    Admit(pb::DeployRequest),
    /// `DeployAdmission/Preview`.
    Preview(pb::DeployRequest),
}

/// The clients of one mTLS connection.
#[derive(Clone, Debug)]
pub struct Connection {
    deploy: pb::deploy_admission_client::DeployAdmissionClient<Channel>,
    health: HealthClient<Channel>,
}

/// How one call was answered: the gRPC code, and the ErrorInfo reason of a rejection (for
/// `Health/Check`, the serving status when it is not SERVING).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Outcome {
    /// Canonical gRPC code name, e.g. `OK`, `PERMISSION_DENIED`.
    pub code: &'static str,
    /// ErrorInfo reason, e.g. `APPROVAL_CONSUMED`; none for an answer without one.
    pub reason: Option<String>,
}

#[derive(Debug)]
enum Credentials {
    None,
    /// One per call index.
    Pool(Vec<String>),
    /// The same on every call.
    Reused(String),
}

/// A call unanswered for this long is counted as `DEADLINE_EXCEEDED` (client timeout), so one
/// hung call cannot stretch a phase far beyond its duration.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a credential outlives the end of its phase's signing, beyond the phase itself.
const CREDENTIAL_MARGIN: Duration = Duration::from_secs(300);
/// How far back credentials are dated, so a server clock slightly behind still accepts them.
const BACKDATE: Duration = Duration::from_secs(60);

// === impl Workload ===

impl Workload {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Health => "health",
            Workload::AdmitDev => "admit-dev",
            Workload::AdmitProd => "admit-prod",
            Workload::Preview => "preview",
        }
    }

    /// The RPC the workload calls.
    pub fn rpc(self) -> &'static str {
        match self {
            Workload::Health => "grpc.health.v1.Health/Check",
            Workload::AdmitDev | Workload::AdmitProd => "byteor.admission.v1.DeployAdmission/Admit",
            Workload::Preview => "byteor.admission.v1.DeployAdmission/Preview",
        }
    }
}

// === impl Calls ===

impl Calls {
    /// Prepares `count` calls of `workload` (signing their credentials now); `run_id` keeps
    /// request and approval ids unique across runs against the same trail.
    pub fn prepare(
        workload: Workload,
        plan: &Plan,
        run_id: &str,
        count: u64,
    ) -> Result<Self, BenchError> {
        let target = &plan.target;
        let environment = match workload {
            Workload::AdmitDev => &target.dev_env,
            _ => &target.prod_env,
        };
        let credentials = match (workload, &plan.signer) {
            (Workload::AdmitProd, Some(key)) => {
                let lifetime = plan.load.duration + CREDENTIAL_MARGIN;
                let signer = CredentialSigner::new(key, target, run_id, lifetime);
                match plan.credentials {
                    CredentialMode::Fresh => Credentials::Pool(signer.sign_pool(count)?),
                    CredentialMode::Reuse => Credentials::Reused(signer.sign("reused")?),
                }
            }
            (Workload::AdmitProd, None) => {
                return Err(BenchError::usage("admit-prod needs --signing-key"));
            }
            _ => Credentials::None,
        };
        Ok(Self {
            workload,
            request_id_prefix: format!("{run_id}-{}", workload.name()),
            template: deploy_request(environment.clone(), target),
            credentials,
        })
    }

    /// The request of call `index`, with its own `request_id`.
    pub fn call(&self, index: u64) -> Call {
        let request = || {
            let mut request = self.template.clone();
            request.request_id = format!("{}-{index}", self.request_id_prefix);
            match &self.credentials {
                Credentials::None => {}
                Credentials::Pool(pool) => {
                    let slot = usize::try_from(index).ok().and_then(|i| pool.get(i));
                    request.credentials.extend(slot.cloned());
                }
                Credentials::Reused(credential) => request.credentials.push(credential.clone()),
            }
            request
        };
        match self.workload {
            Workload::Health => Call::Health,
            Workload::AdmitDev | Workload::AdmitProd => Call::Admit(request()),
            Workload::Preview => Call::Preview(request()),
        }
    }
}

// === impl Call ===

impl Call {
    /// Sends the call once (no retries: every answer is counted as the server gave it).
    pub async fn send(self, connection: &Connection) -> Outcome {
        tokio::time::timeout(CALL_TIMEOUT, self.send_untimed(connection))
            .await
            .unwrap_or_else(|_| Outcome {
                code: "DEADLINE_EXCEEDED",
                reason: Some("(client timeout)".to_owned()),
            })
    }

    async fn send_untimed(self, connection: &Connection) -> Outcome {
        match self {
            Call::Health => {
                let mut health = connection.health.clone();
                match health.check(HealthCheckRequest::default()).await {
                    Ok(answer) => Outcome::health(answer.into_inner().status),
                    Err(status) => Outcome::from_status(&status),
                }
            }
            Call::Admit(request) => {
                let mut deploy = connection.deploy.clone();
                Outcome::from_result(deploy.admit(request).await)
            }
            Call::Preview(request) => {
                let mut deploy = connection.deploy.clone();
                Outcome::from_result(deploy.preview(request).await)
            }
        }
    }
}

// === impl Connection ===

impl Connection {
    /// The clients over `channel`, one HTTP/2 connection.
    pub fn new(channel: Channel) -> Self {
        Self {
            deploy: pb::deploy_admission_client::DeployAdmissionClient::new(channel.clone()),
            health: HealthClient::new(channel),
        }
    }
}

// === impl Outcome ===

impl Outcome {
    /// An OK answer.
    pub const OK: Outcome = Outcome {
        code: "OK",
        reason: None,
    };

    fn from_result<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Self {
        match result {
            Ok(_) => Self::OK,
            Err(status) => Self::from_status(&status),
        }
    }

    fn from_status(status: &tonic::Status) -> Self {
        Self {
            code: code_name(status.code()),
            reason: Rejection::from_status(status).map(|r| r.reason.as_str().to_owned()),
        }
    }

    fn health(status: i32) -> Self {
        match ServingStatus::try_from(status) {
            Ok(ServingStatus::Serving) => Self::OK,
            Ok(other) => Self {
                code: "OK",
                reason: Some(other.as_str_name().to_owned()),
            },
            Err(_) => Self {
                code: "OK",
                reason: Some(format!("serving status {status}")),
            },
        }
    }
}

/// Signs credentials for deploys of the target's spec to its prod environment.
struct CredentialSigner<'a> {
    key: &'a SigningKey,
    template: Claims,
    run_id: &'a str,
}

// === impl CredentialSigner ===

impl<'a> CredentialSigner<'a> {
    fn new(key: &'a SigningKey, target: &Target, run_id: &'a str, lifetime: Duration) -> Self {
        let issued_at = now_whole_seconds() - BACKDATE;
        let environment = &target.prod_env;
        let template = Claims {
            v: 1,
            kid: key.kid().to_owned(),
            org_id: environment.org_id.clone(),
            project_id: environment.project_id.clone(),
            environment_id: environment.environment_id.clone(),
            environment_posture: target.prod_posture.clone(),
            spec_hash: SpecHash::of_bytes(&target.spec_kv).to_string(),
            capabilities: target.capabilities.clone(),
            issued_at,
            expires_at: issued_at + BACKDATE + lifetime,
            issued_by: target.issued_by.clone(),
            approval_id: String::new(),
            config_bundle_digest: None,
        };
        Self {
            key,
            template,
            run_id,
        }
    }

    /// A credential with its own approval id, `apr-<run>-<suffix>`.
    fn sign(&self, suffix: &str) -> Result<String, BenchError> {
        let mut claims = self.template.clone();
        claims.approval_id = format!("apr-{}-{suffix}", self.run_id);
        self.key.sign(&claims).map_err(BenchError::Sign)
    }

    /// `count` single-use credentials, index `i` at position `i`, signed on every core.
    fn sign_pool(&self, count: u64) -> Result<Vec<String>, BenchError> {
        let count = usize::try_from(count).map_err(|_| BenchError::usage("too many calls"))?;
        let threads = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        let chunk = count.div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..count)
                .step_by(chunk)
                .map(|start| {
                    let end = (start + chunk).min(count);
                    scope.spawn(move || {
                        (start..end)
                            .map(|index| self.sign(&index.to_string()))
                            .collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            let mut pool = Vec::with_capacity(count);
            for worker in workers {
                // A signing thread only panics on a bug; report it rather than abort the run.
                let signed = worker
                    .join()
                    .map_err(|_| BenchError::Panicked("a credential signing thread"))?;
                pool.extend(signed?);
            }
            Ok(pool)
        })
    }
}

/// A deploy of the target's spec to `environment`, with a config bundle made for it.
fn deploy_request(environment: pb::EnvironmentRef, target: &Target) -> pb::DeployRequest {
    pb::DeployRequest {
        request_id: String::new(),
        config_bundle: Some(pb::ConfigBundle {
            bundle_id: "bench-bundle".to_owned(),
            digest: SpecHash::of_bytes(b"admission-bench config bundle").to_string(),
            environment_id: environment.environment_id.clone(),
        }),
        environment: Some(environment),
        pipeline_version: "bench-1".to_owned(),
        spec_kv: target.spec_kv.clone(),
        required_capabilities: Vec::new(),
        credentials: Vec::new(),
        initiated_by: target.initiated_by.clone(),
        break_glass: None,
    }
}

/// Now, in whole seconds (credential times are whole seconds).
fn now_whole_seconds() -> SystemTime {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(seconds)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashSet;

    use admission_contract::credential::{KeySet, KeyStatus, verify};
    use clap::Parser;

    use super::*;
    use crate::plan::BenchArgs;

    fn plan(key: SigningKey, credentials: &str) -> Plan {
        let args = BenchArgs::parse_from([
            "admission-bench",
            "--dev-dir",
            "/nonexistent",
            "--workloads",
            "health,preview",
            "--credentials",
            credentials,
        ]);
        let mut plan = Plan::try_from(args).unwrap();
        plan.signer = Some(key);
        plan
    }

    #[test]
    fn fresh_credentials_are_distinct_verified_and_bound_to_the_spec() {
        let (key, _) = SigningKey::generate("bench-kid").unwrap();
        let jwks = serde_json::json!({ "keys": [key.public_jwk(KeyStatus::Active)] });
        let keys = KeySet::from_jwks(jwks.to_string().as_bytes()).unwrap();
        let plan = plan(key, "fresh");
        let calls = Calls::prepare(Workload::AdmitProd, &plan, "run1", 5).unwrap();
        let mut request_ids = HashSet::new();
        let mut approval_ids = HashSet::new();
        for index in 0..5 {
            let Call::Admit(request) = calls.call(index) else {
                panic!("admit-prod makes admit calls");
            };
            assert!(request_ids.insert(request.request_id.clone()));
            assert_eq!(request.credentials.len(), 1);
            let claims = verify(&request.credentials[0], &keys, 16 * 1024).unwrap();
            assert_eq!(
                claims.spec_hash,
                SpecHash::of_bytes(&request.spec_kv).as_str()
            );
            assert_eq!(claims.environment_id, "prod");
            assert_eq!(claims.capabilities, ["deploy"]);
            assert!(approval_ids.insert(claims.approval_id));
        }
        assert_eq!(request_ids.len(), 5);
    }

    #[test]
    fn a_reused_credential_is_the_same_on_every_call() {
        let (key, _) = SigningKey::generate("bench-kid").unwrap();
        let plan = plan(key, "reuse");
        let calls = Calls::prepare(Workload::AdmitProd, &plan, "run1", 3).unwrap();
        let credentials: Vec<_> = (0..3)
            .map(|index| match calls.call(index) {
                Call::Admit(request) => request.credentials,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(credentials[0], credentials[2]);
    }

    #[test]
    fn admit_dev_goes_to_the_dev_environment_without_credentials() {
        let (key, _) = SigningKey::generate("bench-kid").unwrap();
        let plan = plan(key, "fresh");
        let calls = Calls::prepare(Workload::AdmitDev, &plan, "run1", 1).unwrap();
        let Call::Admit(request) = calls.call(0) else {
            panic!("admit-dev makes admit calls");
        };
        let environment = request.environment.unwrap();
        assert_eq!(environment.environment_id, "dev");
        assert_eq!(request.config_bundle.unwrap().environment_id, "dev");
        assert!(request.credentials.is_empty());
        assert_eq!(request.request_id, "run1-admit-dev-0");
    }
}
