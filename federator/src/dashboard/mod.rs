//! The operator dashboard: one HTML page with plain CSS and a JS module, embedded in the binary
//! and served at `/` next to the API. The page only talks to this federator's own `/api/v1`,
//! which the Content-Security-Policy below enforces. Reference: docs/dashboard.md.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Everything same-origin, nothing inline, no frames: the page needs no more, so a rendering
/// bug cannot turn into loading or sending anything elsewhere. `data:` images only for the
/// empty favicon, which spares the browser a 404 (a console error) on `/favicon.ico`.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("assets/index.html");

/// The files under `/dashboard/`, by name: (content type, body).
fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    Some(match name {
        "app.js" => ("text/javascript; charset=utf-8", include_str!("assets/app.js")),
        "dom.js" => ("text/javascript; charset=utf-8", include_str!("assets/dom.js")),
        "style.css" => ("text/css; charset=utf-8", include_str!("assets/style.css")),
        _ => return None,
    })
}

/// The dashboard's routes: the page at `/` and its assets under `/dashboard/`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(index)).route("/dashboard/{file}", get(file))
}

async fn index() -> Response {
    serve("text/html; charset=utf-8", INDEX_HTML)
}

async fn file(Path(name): Path<String>) -> Response {
    match asset(&name) {
        Some((content_type, body)) => serve(content_type, body),
        None => (StatusCode::NOT_FOUND, "no such dashboard file\n").into_response(),
    }
}

fn serve(content_type: &'static str, body: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (HeaderName::from_static("referrer-policy"), "no-referrer"),
        // The assets change with the binary, not with a URL: revalidate rather than run stale JS
        // against a newer API after an upgrade.
        (header::CACHE_CONTROL, "no-cache"),
    ];
    (headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str) -> (StatusCode, String, String, String) {
        let app: Router = router();
        let r = app.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let h = |n: HeaderName| r.headers().get(n).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let (ct, csp) = (h(header::CONTENT_TYPE), h(header::CONTENT_SECURITY_POLICY));
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, ct, csp, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn serves_the_page_and_assets_with_types_and_csp() {
        let (status, ct, csp, body) = get("/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(ct.starts_with("text/html"), "{ct}");
        assert!(csp.contains("default-src 'none'") && !csp.contains("http"), "{csp}");
        // Every asset the page names is served.
        for (name, want) in [("app.js", "text/javascript"), ("dom.js", "text/javascript"), ("style.css", "text/css")] {
            assert!(body.contains(&format!("/dashboard/{name}")) || name == "dom.js", "{name} not linked");
            let (status, ct, csp, _) = get(&format!("/dashboard/{name}")).await;
            assert_eq!(status, StatusCode::OK, "{name}");
            assert!(ct.starts_with(want), "{name}: {ct}");
            assert_eq!(csp, CSP);
        }
        assert_eq!(get("/dashboard/nope.js").await.0, StatusCode::NOT_FOUND);
    }

    /// The assets must not reach out: no absolute URLs (the SVG namespace is a name, never
    /// fetched), and no `innerHTML` with API data.
    #[test]
    fn assets_stay_on_this_origin() {
        for text in [INDEX_HTML, asset("app.js").unwrap().1, asset("dom.js").unwrap().1, asset("style.css").unwrap().1]
        {
            let text = text.replace("\"http://www.w3.org/2000/svg\"", "");
            assert!(!text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"));
            assert!(!text.contains("innerHTML"));
        }
    }
}
