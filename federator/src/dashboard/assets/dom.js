// DOM helpers. Everything from the API goes in as text nodes or attribute values, never as
// markup, so a service or error message cannot inject HTML.

/// el("td", {class: "x", "data-from": "aws-1"}, "text", childNode, [more]) → an element.
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "title") e.title = String(v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  append(e, children);
  return e;
}

function append(e, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(e, c);
    else if (c instanceof Node) e.append(c);
    else e.append(document.createTextNode(String(c)));
  }
}

/// Replaces the children of `parent`.
export function put(parent, ...children) {
  parent.replaceChildren();
  append(parent, children);
}

/// "3 s ago" for a Unix-millisecond instant (null: "never").
export function ago(ms) {
  if (ms === null || ms === undefined) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

/// An RTT in ms for display ("—" when unknown).
export function ms(v) {
  if (v === null || v === undefined) return "—";
  return v < 10 ? v.toFixed(1) : String(Math.round(v));
}

/// "aws-1 70% + gcp-1 30%", or the single cluster when it takes everything.
export function shares(list) {
  if (!list || list.length === 0) return "unreachable";
  if (list.length === 1) return list[0].cluster;
  return list.map((s) => `${s.cluster} ${Math.round(s.share * 100)}%`).join(" + ");
}
