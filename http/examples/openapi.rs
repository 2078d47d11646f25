//! Prints the API's OpenAPI document (the store-backed half), as served at
//! `/api/v1/openapi.json`: `cargo run -p switchboard-http --example openapi`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "{}",
        serde_json::to_string_pretty(&switchboard_http::openapi())?
    );
    Ok(())
}
