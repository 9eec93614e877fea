//! Which credential each route needs: the one table that says what an API key's scopes open.
//!
//! A session token may use every route its account may. An API key may use a route only if
//! the table names a scope the key has, or accepts any credential; routes not named here
//! (account management, admin routes) need a session, so a route added without thinking
//! about keys is closed to them.

use axum::http::Method;

use crate::auth::Credential;
use crate::error::{ApiError, Code};
use crate::records::Scope;

/// What a route asks of an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// A key with this scope.
    Scope(Scope),
    /// Any valid key.
    AnyCredential,
    /// No key at all: sign in.
    Session,
}

/// The requirement of `route` (the matched template, e.g. `/api/v1/agents/{id}`).
pub fn needs(method: &Method, route: &str) -> Needs {
    let read = matches!(*method, Method::GET | Method::HEAD);
    match route {
        "/api/v1/users/me" if read => Needs::AnyCredential,
        "/api/v1/ws/stats" => Needs::AnyCredential,
        "/api/v1/ws/connect" | "/api/v1/analytics" | "/api/v1/auctions/preview" => {
            Needs::Scope(Scope::TasksRead)
        }
        // A dry run of the agent's input schema changes nothing.
        "/api/v1/agents/{id}/validate-input" => Needs::Scope(Scope::AgentsRead),
        r if r == "/api/v1/agents" || r.starts_with("/api/v1/agents/") => Needs::Scope(if read {
            Scope::AgentsRead
        } else {
            Scope::AgentsWrite
        }),
        r if r == "/api/v1/tasks" || r.starts_with("/api/v1/tasks/") => Needs::Scope(if read {
            Scope::TasksRead
        } else {
            Scope::TasksWrite
        }),
        _ => Needs::Session,
    }
}

/// Lets `credential` through `needs`, or says why not.
pub fn authorize(credential: Credential, needs: Needs) -> Result<(), ApiError> {
    let Credential::ApiKey { scopes, .. } = credential else {
        return Ok(());
    };
    match needs {
        Needs::AnyCredential => Ok(()),
        Needs::Scope(scope) if scopes.contains(scope) => Ok(()),
        Needs::Scope(scope) => Err(ApiError::new(
            Code::InsufficientScope,
            format!("this API key lacks the `{}` scope", scope.as_str()),
        )),
        Needs::Session => Err(ApiError::new(
            Code::InsufficientScope,
            "API keys cannot use this route; sign in instead",
        )),
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn routes_map_to_scopes_and_account_routes_need_a_session() {
        let get = Method::GET;
        let post = Method::POST;
        for (method, route, expected) in [
            (&get, "/api/v1/agents", Needs::Scope(Scope::AgentsRead)),
            (
                &get,
                "/api/v1/agents/{id}/versions",
                Needs::Scope(Scope::AgentsRead),
            ),
            (
                &post,
                "/api/v1/agents/upload",
                Needs::Scope(Scope::AgentsWrite),
            ),
            (
                &Method::DELETE,
                "/api/v1/agents/{id}",
                Needs::Scope(Scope::AgentsWrite),
            ),
            (
                &post,
                "/api/v1/agents/{id}/validate-input",
                Needs::Scope(Scope::AgentsRead),
            ),
            (&get, "/api/v1/tasks/{id}", Needs::Scope(Scope::TasksRead)),
            (
                &post,
                "/api/v1/tasks/submit",
                Needs::Scope(Scope::TasksWrite),
            ),
            (
                &post,
                "/api/v1/tasks/{id}/cancel",
                Needs::Scope(Scope::TasksWrite),
            ),
            (&get, "/api/v1/analytics", Needs::Scope(Scope::TasksRead)),
            (&get, "/api/v1/ws/connect", Needs::Scope(Scope::TasksRead)),
            (&get, "/api/v1/users/me", Needs::AnyCredential),
            (&Method::PATCH, "/api/v1/users/me", Needs::Session),
            (&get, "/api/v1/users/me/api-keys", Needs::Session),
            (&post, "/api/v1/users/me/password", Needs::Session),
            (&post, "/api/v1/users/logout", Needs::Session),
            (&post, "/api/v1/ws/broadcast", Needs::Session),
            (&get, "/api/v1/agentsx", Needs::Session),
        ] {
            assert_eq!(needs(method, route), expected, "{method} {route}");
        }
    }

    #[test]
    fn keys_pass_only_with_their_scopes() {
        let key = Credential::ApiKey {
            id: Uuid::new_v4(),
            hash: [7; 32],
            scopes: [Scope::TasksRead].into_iter().collect(),
        };
        assert!(authorize(key, Needs::Scope(Scope::TasksRead)).is_ok());
        assert!(authorize(key, Needs::AnyCredential).is_ok());
        let e = authorize(key, Needs::Scope(Scope::TasksWrite)).unwrap_err();
        assert_eq!(e.code, Code::InsufficientScope);
        assert!(e.message.contains("tasks:write"), "{}", e.message);
        assert_eq!(
            authorize(key, Needs::Session).unwrap_err().code,
            Code::InsufficientScope
        );
        assert!(
            authorize(
                Credential::Session {
                    generation: 0,
                    session: None
                },
                Needs::Session
            )
            .is_ok()
        );
    }
}
