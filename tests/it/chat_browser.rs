//! The chat's browser page in a real headless Chromium, beside `nc`-style and `sockit chat join`
//! clients in the same rooms.

use serde_json::json;

use crate::support::browser::Driver;
use crate::support::*;

/// The harness itself: a page served by `sockit serve`, typed into, read back and
/// photographed through WebDriver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_harness_types_reads_and_photographs_a_page() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        r#"<!doctype html><meta charset=utf-8><title>echo</title>
<input id=in aria-label=in><ol id=out></ol>
<script>
document.getElementById('in').addEventListener('keydown', e => {
  if (e.key !== 'Enter') return;
  const li = document.createElement('li');
  li.textContent = e.target.value;
  document.getElementById('out').append(li);
  e.target.value = '';
});
</script>"#,
    )
    .unwrap();
    let server = Server::start(&["serve", dir.path().to_str().unwrap(), "--port", "0"]);
    let driver = Driver::start().await;
    let browser = driver.open().await;
    browser.open_url(&format!("http://{}/", server.addr)).await;
    browser.type_line("#in", "héllo 你好 🙂").await;
    let text = browser.wait_for_text("#out", "héllo").await;
    assert_eq!(text, "héllo 你好 🙂");
    assert_eq!(browser.execute("return 6 * 7;", vec![]).await, json!(42));
    assert_eq!(browser.text_of("#nothing").await, None);
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    browser.close().await;
}
