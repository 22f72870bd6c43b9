// medmesh console: the little the pages need a script for — live events,
// upload progress, dataset fetch progress. Everything else is plain HTML
// forms and links. It builds nodes and sets text (never HTML from data),
// as the Content-Security-Policy's Trusted Types requirement enforces.
(function () {
  'use strict';

  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute('content') : '';
  }
  function el(tag, text, attrs) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (attrs) Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }
  // self is this node, as the page's header names it.
  function self() {
    var m = document.querySelector('meta[name="medmesh-self"]');
    return m ? { peer: m.getAttribute('content'), org: m.getAttribute('data-org') } : { peer: '', org: '' };
  }
  function shortPeer(p) { return p && p.length > 16 ? p.slice(0, 6) + '\u2026' + p.slice(-6) : (p || ''); }
  function who(org, p) {
    var me = self();
    if (p && p === me.peer) return 'this node (' + (me.org || 'no organisation set') + ')';
    return org ? org + ' (' + shortPeer(p) + ')' : shortPeer(p);
  }
  function when(s) {
    if (!s) return 'no expiry';
    var d = new Date(s);
    return isNaN(d) ? s : d.toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
  }
  function recordName(ev) { return ev.name || ('a ' + (ev.class || 'record') + ' (' + ev.id.slice(0, 10) + '\u2026)'); }

  // describe says what an event means, in a sentence.
  function describe(ev) {
    switch (ev.type) {
      case 'shared':
        return who(ev.owner_org, ev.owner) + ' shared ' + recordName(ev) + ' with you for ' + ev.purpose +
          (ev.expires ? ', until ' + when(ev.expires) : ', with no expiry') + '.';
      case 'revoked':
        return who(ev.owner_org, ev.owner) + ' revoked your access to ' + recordName(ev) + '.';
      case 'read':
        if (ev.attested_by && ev.attested_by.length) {
          return who('', ev.attested_by[0]) + ' attests it served ' + ev.count + ' read' + (ev.count === 1 ? '' : 's') +
            ' of ' + recordName(ev) + ' to ' + who(ev.reader_org, ev.reader) + '.';
        }
        return who(ev.reader_org, ev.reader) + ' read ' + recordName(ev) + (ev.purpose ? ' (purpose: ' + ev.purpose + ')' : '') + '.';
    }
    return ev.type + ' ' + ev.id;
  }

  function eventItem(ev) {
    var li = el('li', null, { 'data-seq': String(ev.seq), 'data-type': ev.type });
    li.appendChild(el('time', when(ev.time), { datetime: ev.time }));
    li.appendChild(el('span', ev.type === 'read' ? 'Read' : ev.type === 'shared' ? 'Shared with you' : 'Revoked', { 'class': 'badge' }));
    li.appendChild(document.createTextNode(' ' + describe(ev) + ' '));
    li.appendChild(el('a', 'Open', { href: '/ui/records/' + ev.id }));
    return li;
  }

  // sharedRow is a new row for the records page's "Shared with me" table.
  function sharedRow(ev) {
    var tr = el('tr', null, { 'data-id': ev.id, 'class': 'fresh' });
    var td = el('td');
    td.appendChild(el('a', recordName(ev), { href: '/ui/records/' + ev.id }));
    tr.appendChild(td);
    tr.appendChild(el('td', who(ev.owner_org, ev.owner)));
    tr.appendChild(el('td', ev.purpose));
    tr.appendChild(el('td', when(ev.expires)));
    tr.appendChild(el('td', ev.class));
    tr.appendChild(el('td', 'v' + ev.version));
    return tr;
  }

  function onEvent(ev) {
    var banner = document.getElementById('live-banner');
    if (banner) {
      banner.textContent = '';
      banner.appendChild(el('strong', 'Live:'));
      banner.appendChild(document.createTextNode(describe(ev) + ' '));
      banner.appendChild(el('a', 'Open', { href: '/ui/records/' + ev.id }));
      banner.hidden = false;
    }
    var list = document.getElementById('live-list');
    if (list && !list.querySelector('li[data-seq="' + ev.seq + '"]')) {
      var empty = document.getElementById('live-empty');
      if (empty) empty.remove();
      list.insertBefore(eventItem(ev), list.firstChild);
    }
    var shared = document.getElementById('shared-records');
    if (shared) {
      var body = shared.tBodies[0];
      var row = body.querySelector('tr[data-id="' + ev.id + '"]');
      if (ev.type === 'shared' && !row) {
        var none = document.getElementById('shared-empty');
        if (none) none.remove();
        body.insertBefore(sharedRow(ev), body.firstChild);
      } else if (ev.type === 'revoked' && row && !row.classList.contains('revoked')) {
        row.className = 'revoked';
        row.cells[0].appendChild(document.createTextNode(' '));
        row.cells[0].appendChild(el('span', 'access revoked', { 'class': 'badge bad' }));
      }
    }
  }

  function startLive() {
    if (!csrf() || typeof EventSource === 'undefined') return;
    var es = new EventSource('/ui/events');
    ['shared', 'revoked', 'read'].forEach(function (t) {
      es.addEventListener(t, function (e) {
        try { onEvent(JSON.parse(e.data)); } catch (err) { /* a malformed event is skipped */ }
      });
    });
    window.addEventListener('pagehide', function () { es.close(); });
  }

  // Upload with a progress bar: the same multipart form the browser would
  // post, sent with XMLHttpRequest for its upload progress events.
  function enhanceUpload() {
    var form = document.getElementById('upload-form');
    if (!form) return;
    var bar = document.getElementById('upload-progress');
    var status = document.getElementById('upload-status');
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      var file = form.querySelector('input[type=file]');
      if (!file.files.length) { status.textContent = 'Choose a file first.'; return; }
      var button = form.querySelector('button[type=submit]');
      button.disabled = true;
      bar.hidden = false;
      bar.value = 0;
      status.textContent = 'Uploading ' + file.files[0].name + '\u2026';
      var xhr = new XMLHttpRequest();
      xhr.open('POST', form.getAttribute('action'));
      xhr.setRequestHeader('X-CSRF-Token', csrf());
      xhr.setRequestHeader('Accept', 'application/json');
      xhr.upload.addEventListener('progress', function (p) {
        if (p.lengthComputable) {
          bar.max = p.total;
          bar.value = p.loaded;
          status.textContent = 'Uploading ' + file.files[0].name + ': ' + Math.floor(100 * p.loaded / p.total) + '%';
        }
      });
      xhr.upload.addEventListener('load', function () { status.textContent = 'Encrypting and storing\u2026'; });
      xhr.addEventListener('load', function () {
        var body = {};
        try { body = JSON.parse(xhr.responseText); } catch (err) { /* not JSON */ }
        if (xhr.status === 200 && body.url) {
          status.textContent = 'Stored.';
          window.location.assign(body.url);
          return;
        }
        button.disabled = false;
        status.textContent = 'Upload failed: ' + (body.error || xhr.statusText) + (body.hint ? ' (' + body.hint + ')' : '');
      });
      xhr.addEventListener('error', function () {
        button.disabled = false;
        status.textContent = 'Upload failed: the node did not answer. Nothing was stored.';
      });
      xhr.send(new FormData(form));
    });
  }

  // Dataset fetch progress: poll the job until it is done.
  function followFetch() {
    var box = document.getElementById('fetch-progress');
    if (!box) return;
    var job = box.getAttribute('data-job');
    var bar = box.querySelector('progress');
    var text = box.querySelector('.fetch-status');
    function poll() {
      var xhr = new XMLHttpRequest();
      xhr.open('GET', '/ui/research/fetch/' + encodeURIComponent(job));
      xhr.setRequestHeader('Accept', 'application/json');
      xhr.addEventListener('load', function () {
        if (xhr.status !== 200) { text.textContent = 'The fetch is no longer known to the node.'; return; }
        var st = JSON.parse(xhr.responseText);
        var p = st.progress || {};
        bar.max = 100;
        bar.value = st.percent;
        if (st.error) { text.textContent = 'Fetch failed: ' + st.error; return; }
        text.textContent = (st.done ? 'Done: ' : 'Fetching: ') + (p.done_study_count || 0) + ' of ' + (p.study_count || 0) +
          ' studies, ' + ((p.fetched_count || 0) + (p.skipped_count || 0)) + ' of ' + (p.instance_count || 0) + ' instances (' + st.percent + '%)' +
          (st.done && st.csv ? '. Manifest: ' + st.csv : '');
        if (!st.done) setTimeout(poll, 700);
      });
      xhr.send();
    }
    poll();
  }

  document.addEventListener('DOMContentLoaded', function () {
    startLive();
    enhanceUpload();
    followFetch();
  });
})();
