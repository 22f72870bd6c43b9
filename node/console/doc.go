// Package console is the node's web console: the pages clinic staff — a
// records clerk, a radiologist, a privacy officer — use in a browser to
// share, read, audit and watch, served by the node itself on its loopback
// API, offline (nothing from a CDN), over the same services and authority
// checks as the CLI.
//
// It is an Area of the HTTP layer (node/httpapi) of a special kind: besides
// two token-authenticated API routes (POST /api/v1/console/login for
// `medmesh ui`, GET /api/v1/events for `medmesh watch`), it serves pages
// under /ui/ that a browser loads, and a browser cannot send the API's
// bearer token. So:
//
//   - Sign-in: `medmesh ui` (holding the token) asks for a sign-in link.
//     Its code is random (256 bits), works once and for LoginTTL only;
//     opening it sets a session cookie (HttpOnly, SameSite=Strict,
//     Path=/ui/) and redirects to the console, so the code leaves the
//     address bar. Secure cannot be set: the console is plain http on
//     127.0.0.1 (what Secure protects — the cookie on the wire — never
//     leaves the machine). Sessions live in memory: a restarted daemon
//     signs everyone out. They end after IdleTTL without use, after
//     SessionTTL in any case, and on sign-out.
//   - Without a session no route under /ui/ serves data: pages answer a
//     sign-in page saying how to get a link, everything else 401.
//   - Every change (and every read, which the ledger records) is a POST
//     with the session's CSRF token (a form field or X-CSRF-Token), from
//     the console's own origin (Origin, Sec-Fetch-Site). Cookies are not
//     isolated by port, and SameSite counts every port of 127.0.0.1 as the
//     same site: a page another local program serves could otherwise make
//     the browser post to the console with its cookie.
//   - Every answer carries a strict Content-Security-Policy (default-src
//     'self'; scripts only the console's own file, which the page also
//     pins by a Subresource Integrity hash; no inline script or style;
//     Trusted Types; frame-ancestors 'none'; form-action
//     'self'), nosniff, a same-origin referrer policy, no caching of pages.
//   - The API's loopback Host check applies as to every route (DNS
//     rebinding); api.Server.Browser hands only paths under /ui/ to the
//     console, so no API route becomes reachable without the token.
//
// Live events come from the node's ledger subscription (Feed): a record
// shared with this node, revoked from it, or — for its owner — read. The
// console's pages get them as server-sent events, `medmesh watch` as one
// JSON object a line.
package console
