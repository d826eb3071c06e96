//! The web app in a real browser: `web/e2e/play.test.mjs` (Node's test runner and
//! playwright-core driving Debian's Chromium) plays a whole quiz as a host, a big screen and
//! three phones, through Debian's nginx serving the built app (`web/dist`) and the real APIs on
//! one origin: creation with a refused field, the lobby with presence, a kick, a reload in the
//! middle of a question, live answer counts, the reveals and the podium, with axe-core on every
//! screen. Screenshots go to `PODIUM_SCREENSHOTS` (the README's are in `docs/screenshots`).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use podium_e2e::Stack;
use podium_testkit::{Gateway, web_root};

fn host_port(url: &str) -> &str {
    url.trim_start_matches("http://")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_a_screen_and_three_phones_play_a_quiz_in_the_web_app() -> Result<()> {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    ensure!(
        web_root().join("index.html").exists(),
        "{} has no built app: run `npm ci && npm run build` in web/ (test.sh does)",
        web_root().display()
    );
    let stack = Stack::start().await?;
    let gateway = Gateway::start(
        host_port(&stack.command_url),
        &[host_port(&stack.query_url)],
    )
    .await?;
    let screenshots = tempfile::tempdir()?;
    let shots = std::env::var_os("PODIUM_SCREENSHOTS")
        .map_or_else(|| screenshots.path().to_owned(), Into::into);
    let run = tokio::process::Command::new("node")
        .args(["--test", "--test-reporter=spec", "e2e/"])
        .current_dir(&web)
        .env("PODIUM_URL", gateway.url())
        .env("PODIUM_SCREENSHOTS", &shots)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .context("the browser test did not finish in 240 s")?
        .context("node (Node.js 20) runs the browser test")?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(
        output.status.success(),
        "the browser test failed:\n{report}"
    );
    // Every screen was captured, so the run reached the podium.
    for screen in [
        "host-form",
        "player-kicked",
        "host-live",
        "screen-reveal",
        "player-podium",
    ] {
        ensure!(
            shots.join(format!("{screen}.png")).exists(),
            "no screenshot of {screen}:\n{report}"
        );
    }
    stack.stop().await;
    Ok(())
}
