// Interop check of a medmesh node's DICOMweb API with a client we did not
// write: the npm package dicomweb-client (run under Node with xhr2 as
// XMLHttpRequest).
//
//   MEDMESH_DICOMWEB=http://127.0.0.1:PORT/dicomweb MEDMESH_TOKEN=... \
//     node interop.js STUDY_UID PATIENT_ID FILE...
//
// STOW-RS pushes the files, QIDO-RS must find the study (by PatientID, by
// StudyInstanceUID and by a lower-case fuzzy name), its series and every
// instance (under the study and from the root), WADO-RS must return every
// file byte for byte (SHA-256), the study metadata must list every
// instance with its pixel data as a BulkDataURI, and the first frame and
// rendered PNG of an instance must come back.
// Prints one JSON line with what it checked; exits 1 on any failure.
'use strict';
global.XMLHttpRequest = require('xhr2');
const fs = require('fs');
const crypto = require('crypto');
const { api } = require('dicomweb-client');

const sha = (buf) => crypto.createHash('sha256').update(Buffer.from(buf)).digest('hex');
const val = (ds, tag) => (ds[tag] && ds[tag].Value ? ds[tag].Value[0] : undefined);

async function main() {
  const [studyUID, patientID, ...files] = process.argv.slice(2);
  if (!process.env.MEDMESH_DICOMWEB || !process.env.MEDMESH_TOKEN || !studyUID || files.length === 0) {
    throw new Error('usage: MEDMESH_DICOMWEB=... MEDMESH_TOKEN=... node interop.js STUDY_UID PATIENT_ID FILE...');
  }
  const client = new api.DICOMwebClient({
    url: process.env.MEDMESH_DICOMWEB,
    headers: { Authorization: 'Bearer ' + process.env.MEDMESH_TOKEN },
  });
  const want = new Map();
  const datasets = files.map((f) => {
    const b = fs.readFileSync(f);
    want.set(sha(b), f);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength).slice().buffer;
  });

  await client.storeInstances({ datasets });

  const byPatient = await client.searchForStudies({ queryParams: { PatientID: patientID } });
  if (!byPatient.some((s) => val(s, '0020000D') === studyUID)) {
    throw new Error(`QIDO-RS PatientID=${patientID} did not find study ${studyUID}`);
  }
  const byUID = await client.searchForStudies({ queryParams: { StudyInstanceUID: studyUID } });
  if (byUID.length !== 1 || Number(val(byUID[0], '00201208')) !== files.length) {
    throw new Error(`QIDO-RS StudyInstanceUID: ${JSON.stringify(byUID)}`);
  }
  const instances = await client.searchForInstances({ studyInstanceUID: studyUID });
  if (instances.length !== files.length) {
    throw new Error(`QIDO-RS instances: ${instances.length}, want ${files.length}`);
  }
  const rootInstances = await client.searchForInstances({ queryParams: { StudyInstanceUID: studyUID } });
  if (rootInstances.length !== files.length) {
    throw new Error(`QIDO-RS /instances: ${rootInstances.length}, want ${files.length}`);
  }
  const rootSeries = await client.searchForSeries({ queryParams: { StudyInstanceUID: studyUID } });
  const seriesUIDs = new Set(instances.map((i) => val(i, '0020000E')));
  if (rootSeries.length !== seriesUIDs.size) {
    throw new Error(`QIDO-RS /series: ${rootSeries.length}, want ${seriesUIDs.size}`);
  }
  const name = val(byUID[0], '00100010');
  const given = String(name && name.Alphabetic ? name.Alphabetic : '').split('^').pop().toLowerCase();
  const fuzzy = await client.searchForStudies({ queryParams: { PatientName: given, fuzzymatching: 'true' } });
  if (!given || !fuzzy.some((s) => val(s, '0020000D') === studyUID)) {
    throw new Error(`QIDO-RS fuzzy PatientName=${given} did not find study ${studyUID}`);
  }
  const first = instances[0];
  const ids = { studyInstanceUID: studyUID, seriesInstanceUID: val(first, '0020000E'), sopInstanceUID: val(first, '00080018') };
  const frames = await client.retrieveInstanceFrames({ ...ids, frameNumbers: [1] });
  const frameBytes = Number(val(first, '00280010')) * Number(val(first, '00280011')) * Number(val(first, '00280100')) / 8;
  if (frames.length !== 1 || frames[0].byteLength !== frameBytes) {
    throw new Error(`WADO-RS frames: ${frames.length} parts of ${frames[0] && frames[0].byteLength} bytes, want 1 of ${frameBytes}`);
  }
  const rendered = await client.retrieveInstanceRendered({ ...ids, mediaTypes: [{ mediaType: 'image/png' }] });
  const png = Buffer.from(Array.isArray(rendered) ? rendered[0] : rendered); // the client wraps the body in an array
  if (png.subarray(1, 4).toString() !== 'PNG') {
    throw new Error('WADO-RS rendered: not a PNG: ' + png.subarray(0, 16).toString('hex') + ' ' + png.length);
  }
  const got = new Set();
  for (const inst of instances) {
    const part = await client.retrieveInstance({
      studyInstanceUID: studyUID,
      seriesInstanceUID: val(inst, '0020000E'),
      sopInstanceUID: val(inst, '00080018'),
    });
    const h = sha(part);
    if (!want.has(h)) {
      throw new Error(`WADO-RS instance ${val(inst, '00080018')} is not byte for byte any file sent`);
    }
    got.add(h);
  }
  if (got.size !== want.size) {
    throw new Error(`WADO-RS returned ${got.size} distinct files, want ${want.size}`);
  }
  const meta = await client.retrieveStudyMetadata({ studyInstanceUID: studyUID });
  if (meta.length !== files.length || !meta.every((m) => val(m, '0020000D') === studyUID)) {
    throw new Error(`WADO-RS metadata: ${meta.length} entries`);
  }
  if (!meta.every((m) => m['7FE00010'] && m['7FE00010'].BulkDataURI)) {
    throw new Error('WADO-RS metadata: pixel data without a BulkDataURI');
  }
  console.log(JSON.stringify({ ok: true, stored: files.length, qido_instances: instances.length, qido_root_instances: rootInstances.length,
    qido_root_series: rootSeries.length, fuzzy: fuzzy.length, frames: frames.length, rendered_png: png.length, wado_identical: got.size, metadata: meta.length }));
}

main().catch((e) => {
  console.error('interop failure:', e && e.message ? e.message : e);
  process.exit(1);
});
