// Interop check of a medmesh node's DICOMweb API with a client we did not
// write: the npm package dicomweb-client (run under Node with xhr2 as
// XMLHttpRequest).
//
//   MEDMESH_DICOMWEB=http://127.0.0.1:PORT/dicomweb MEDMESH_TOKEN=... \
//     node interop.js STUDY_UID PATIENT_ID FILE...
//
// STOW-RS pushes the files, QIDO-RS must find the study (by PatientID and
// by StudyInstanceUID) and every instance, WADO-RS must return every file
// byte for byte (SHA-256), and the study metadata must list every instance.
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
  console.log(JSON.stringify({ ok: true, stored: files.length, qido_instances: instances.length, wado_identical: got.size, metadata: meta.length }));
}

main().catch((e) => {
  console.error('interop failure:', e && e.message ? e.message : e);
  process.exit(1);
});
