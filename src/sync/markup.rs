//! Markdown (local descriptions) ↔ HTML (Plane's `description_html`).
