package dicom

// basicProfile is PS3.15 Annex E Table E.1-1 (Basic Application Level
// Confidentiality Profile): tag -> action code. D: replace with a dummy
// value; Z: zero-length; X: remove; K: keep; C: clean; U: replace UID with a
// keyed, consistent one. Combined codes depend on the IOD's attribute type;
// see resolveAction for how they are resolved here. Attributes with VR UI
// that are not listed are remapped too (unless they name a SOP class,
// transfer syntax or coding scheme); private attributes are always removed.
var basicProfile = map[uint32]string{
	// File meta and general SOP common
	0x00080014: "U",      // Instance Creator UID
	0x00080015: "X",      // Instance Coercion DateTime
	0x00080017: "U",      // Acquisition UID
	0x00080018: "U",      // SOP Instance UID
	0x00080019: "U",      // Pyramid UID
	0x00080012: "X/D",    // Instance Creation Date
	0x00080013: "X/Z/D",  // Instance Creation Time
	0x00080020: "Z",      // Study Date
	0x00080021: "X/D",    // Series Date
	0x00080022: "X/D",    // Acquisition Date
	0x00080023: "Z/D",    // Content Date
	0x00080024: "X",      // Overlay Date
	0x00080025: "X",      // Curve Date
	0x0008002A: "X/D",    // Acquisition DateTime
	0x00080030: "Z",      // Study Time
	0x00080031: "X/D",    // Series Time
	0x00080032: "X/D",    // Acquisition Time
	0x00080033: "Z/D",    // Content Time
	0x00080034: "X",      // Overlay Time
	0x00080035: "X",      // Curve Time
	0x00080050: "Z",      // Accession Number
	0x00080054: "X",      // Retrieve AE Title
	0x00080058: "U",      // Failed SOP Instance UID List
	0x00080080: "X/Z/D",  // Institution Name
	0x00080081: "X",      // Institution Address
	0x00080082: "X/Z/D",  // Institution Code Sequence
	0x00080090: "Z",      // Referring Physician's Name
	0x00080092: "X",      // Referring Physician's Address
	0x00080094: "X",      // Referring Physician's Telephone Numbers
	0x00080096: "X",      // Referring Physician Identification Sequence
	0x0008009C: "X",      // Consulting Physician's Name
	0x0008009D: "X",      // Consulting Physician Identification Sequence
	0x0008010D: "U",      // Context Group Extension Creator UID
	0x00080201: "X",      // Timezone Offset From UTC
	0x00081000: "X",      // Network ID
	0x00081010: "X/Z/D",  // Station Name
	0x00081030: "X",      // Study Description
	0x00081032: "X",      // Procedure Code Sequence
	0x0008103E: "X",      // Series Description
	0x00081040: "X",      // Institutional Department Name
	0x00081041: "X",      // Institutional Department Type Code Sequence
	0x00081048: "X",      // Physician(s) of Record
	0x00081049: "X",      // Physician(s) of Record Identification Sequence
	0x00081050: "X",      // Performing Physician's Name
	0x00081052: "X",      // Performing Physician Identification Sequence
	0x00081060: "X",      // Name of Physician(s) Reading Study
	0x00081062: "X",      // Physician(s) Reading Study Identification Sequence
	0x00081070: "X/Z/D",  // Operators' Name
	0x00081072: "X/D",    // Operator Identification Sequence
	0x00081080: "X",      // Admitting Diagnoses Description
	0x00081084: "X",      // Admitting Diagnoses Code Sequence
	0x00081110: "X/Z/U*", // Referenced Study Sequence
	0x00081111: "X/Z/U*", // Referenced Performed Procedure Step Sequence
	0x00081120: "X",      // Referenced Patient Sequence
	0x00081140: "X/Z/U*", // Referenced Image Sequence
	0x00081155: "U",      // Referenced SOP Instance UID
	0x00081195: "U",      // Transaction UID
	0x00081250: "X",      // Related Series Sequence
	0x00082111: "X",      // Derivation Description
	0x00083010: "U",      // Irradiation Event UID
	0x00084000: "X",      // Identifying Comments
	0x00089123: "U",      // Creator-Version UID
	// Patient
	0x00100010: "Z",   // Patient's Name (replaced by a keyed pseudonym)
	0x00100020: "Z",   // Patient ID (replaced by a keyed pseudonym)
	0x00100021: "X",   // Issuer of Patient ID
	0x00100024: "X",   // Issuer of Patient ID Qualifiers Sequence
	0x00100030: "Z",   // Patient's Birth Date
	0x00100032: "X",   // Patient's Birth Time
	0x00100033: "X",   // Patient's Birth Date in Alternative Calendar
	0x00100034: "X",   // Patient's Death Date in Alternative Calendar
	0x00100035: "X",   // Patient's Alternative Calendar
	0x00100040: "Z",   // Patient's Sex
	0x00100050: "X",   // Patient's Insurance Plan Code Sequence
	0x00100101: "X",   // Patient's Primary Language Code Sequence
	0x00100102: "X",   // Patient's Primary Language Modifier Code Sequence
	0x00101000: "X",   // Other Patient IDs
	0x00101001: "X",   // Other Patient Names
	0x00101002: "X",   // Other Patient IDs Sequence
	0x00101005: "X",   // Patient's Birth Name
	0x00101010: "X",   // Patient's Age
	0x00101020: "X",   // Patient's Size
	0x00101030: "X",   // Patient's Weight
	0x00101040: "X",   // Patient's Address
	0x00101050: "X",   // Insurance Plan Identification
	0x00101060: "X",   // Patient's Mother's Birth Name
	0x00101080: "X",   // Military Rank
	0x00101081: "X",   // Branch of Service
	0x00101090: "X",   // Medical Record Locator
	0x00101100: "X",   // Referenced Patient Photo Sequence
	0x00102000: "X",   // Medical Alerts
	0x00102110: "X",   // Allergies
	0x00102150: "X",   // Country of Residence
	0x00102152: "X",   // Region of Residence
	0x00102154: "X",   // Patient's Telephone Numbers
	0x00102155: "X",   // Patient's Telecom Information
	0x00102160: "X",   // Ethnic Group
	0x00102180: "X",   // Occupation
	0x001021A0: "X",   // Smoking Status
	0x001021B0: "X",   // Additional Patient History
	0x001021C0: "X",   // Pregnancy Status
	0x001021D0: "X",   // Last Menstrual Date
	0x001021F0: "X",   // Patient's Religious Preference
	0x00102203: "X/Z", // Patient's Sex Neutered
	0x00102297: "X",   // Responsible Person
	0x00102299: "X",   // Responsible Organization
	0x00104000: "X",   // Patient Comments
	// Clinical trial
	0x00120010: "D", // Clinical Trial Sponsor Name
	0x00120020: "D", // Clinical Trial Protocol ID
	0x00120021: "Z", // Clinical Trial Protocol Name
	0x00120030: "Z", // Clinical Trial Site ID
	0x00120031: "Z", // Clinical Trial Site Name
	0x00120040: "D", // Clinical Trial Subject ID
	0x00120042: "D", // Clinical Trial Subject Reading ID
	0x00120050: "Z", // Clinical Trial Time Point ID
	0x00120051: "X", // Clinical Trial Time Point Description
	0x00120060: "Z", // Clinical Trial Coordinating Center Name
	0x00120071: "X", // Clinical Trial Series ID
	0x00120072: "X", // Clinical Trial Series Description
	0x00120081: "D", // Clinical Trial Protocol Ethics Committee Name
	0x00120082: "X", // Clinical Trial Protocol Ethics Committee Approval Number
	// Acquisition / equipment
	0x00140407: "X",     // Calibration Time (NDE)
	0x0014407C: "X",     // Calibration Time
	0x0014407E: "X",     // Calibration Date
	0x00180010: "Z/D",   // Contrast/Bolus Agent
	0x00180027: "X",     // Intervention Drug Stop Time
	0x00180035: "X",     // Intervention Drug Start Time
	0x00181000: "X/Z/D", // Device Serial Number
	0x00181002: "U",     // Device UID
	0x00181004: "X",     // Plate ID
	0x00181005: "X",     // Generator ID
	0x00181007: "X",     // Cassette ID
	0x00181008: "X",     // Gantry ID
	0x00181009: "X",     // Unique Device Identifier
	0x0018100A: "X",     // UDI Sequence
	0x0018100B: "U",     // Manufacturer's Device Class UID
	0x00181012: "X",     // Date of Secondary Capture
	0x00181014: "X",     // Time of Secondary Capture
	0x00181016: "X",     // Secondary Capture Device Manufacturer
	0x00181017: "X",     // Hardcopy Device Manufacturer
	0x00181018: "X",     // Secondary Capture Device Manufacturer's Model Name
	0x00181019: "X",     // Secondary Capture Device Software Versions
	0x0018101A: "X",     // Hardcopy Device Software Version
	0x0018101B: "X",     // Hardcopy Device Manufacturer's Model Name
	0x00181030: "X/D",   // Protocol Name
	0x00181042: "X",     // Contrast/Bolus Start Time
	0x00181043: "X",     // Contrast/Bolus Stop Time
	0x00181072: "X",     // Radiopharmaceutical Start Time
	0x00181073: "X",     // Radiopharmaceutical Stop Time
	0x00181078: "X",     // Radiopharmaceutical Start DateTime
	0x00181079: "X",     // Radiopharmaceutical Stop DateTime
	0x00181200: "X",     // Date of Last Calibration
	0x00181201: "X",     // Time of Last Calibration
	0x00181202: "X",     // DateTime of Last Calibration
	0x00181400: "X/D",   // Acquisition Device Processing Description
	0x00182042: "U",     // Target UID
	0x00184000: "X",     // Acquisition Comments
	0x0018700A: "X/D",   // Detector ID
	0x0018700C: "X",     // Date of Last Detector Calibration
	0x00189074: "X/D",   // Frame Acquisition DateTime
	0x00189151: "X/D",   // Frame Reference DateTime
	0x00189185: "X",     // Respiratory Motion Compensation Technique Description
	0x00189367: "D",     // X-Ray Source ID
	0x00189371: "D",     // X-Ray Detector ID
	0x00189424: "X",     // Acquisition Protocol Description
	0x00189516: "X/D",   // Start Acquisition DateTime
	0x00189517: "X/D",   // End Acquisition DateTime
	0x00189623: "X/D",   // Functional Sync Pulse
	0x00189701: "X/D",   // Decay Correction DateTime
	0x00189804: "X/D",   // Exclusion Start DateTime
	0x00189919: "X/D",   // Instruction Performed DateTime
	0x0018A002: "X/D",   // Contribution DateTime
	0x0018A003: "X",     // Contribution Description
	0x001811BB: "D",     // Acquisition Field Of View Label
	0x00181020: "X",     // Software Versions
	// Study / series / image
	0x0020000D: "U", // Study Instance UID
	0x0020000E: "U", // Series Instance UID
	0x00200010: "Z", // Study ID
	0x00200027: "X", // Pyramid Label
	0x00200052: "U", // Frame of Reference UID
	0x00200200: "U", // Synchronization Frame of Reference UID
	0x00203401: "X", // Modifying Device ID
	0x00203404: "X", // Modifying Device Manufacturer
	0x00203406: "X", // Modified Image Description
	0x00204000: "X", // Image Comments
	0x00209158: "X", // Frame Comments
	0x00209161: "U", // Concatenation UID
	0x00209164: "U", // Dimension Organization UID
	0x00281199: "U", // Palette Color Lookup Table UID
	0x00281214: "U", // Large Palette Color Lookup Table UID
	0x00284000: "X", // Image Presentation Comments
	// Study management
	0x00320012: "X",   // Study ID Issuer
	0x00320032: "X",   // Study Verified Date
	0x00320033: "X",   // Study Verified Time
	0x00320034: "X",   // Study Read Date
	0x00320035: "X",   // Study Read Time
	0x00321000: "X",   // Scheduled Study Start Date
	0x00321001: "X",   // Scheduled Study Start Time
	0x00321010: "X",   // Scheduled Study Stop Date
	0x00321011: "X",   // Scheduled Study Stop Time
	0x00321020: "X",   // Scheduled Study Location
	0x00321021: "X",   // Scheduled Study Location AE Title
	0x00321030: "X",   // Reason for Study
	0x00321032: "X",   // Requesting Physician
	0x00321033: "X",   // Requesting Service
	0x00321040: "X",   // Study Arrival Date
	0x00321041: "X",   // Study Arrival Time
	0x00321050: "X",   // Study Completion Date
	0x00321051: "X",   // Study Completion Time
	0x00321060: "X/Z", // Requested Procedure Description
	0x00321064: "X",   // Requested Procedure Code Sequence
	0x00321066: "X",   // Reason for Visit
	0x00321067: "X",   // Reason for Visit Code Sequence
	0x00321070: "X",   // Requested Contrast Agent
	0x00324000: "X",   // Study Comments
	// Visit
	0x00380004: "X", // Referenced Patient Alias Sequence
	0x00380010: "X", // Admission ID
	0x00380011: "X", // Issuer of Admission ID
	0x00380014: "X", // Issuer of Admission ID Sequence
	0x0038001A: "X", // Scheduled Admission Date
	0x0038001B: "X", // Scheduled Admission Time
	0x0038001C: "X", // Scheduled Discharge Date
	0x0038001D: "X", // Scheduled Discharge Time
	0x0038001E: "X", // Scheduled Patient Institution Residence
	0x00380020: "X", // Admitting Date
	0x00380021: "X", // Admitting Time
	0x00380030: "X", // Discharge Date
	0x00380032: "X", // Discharge Time
	0x00380040: "X", // Discharge Diagnosis Description
	0x00380044: "X", // Discharge Diagnosis Code Sequence
	0x00380050: "X", // Special Needs
	0x00380060: "X", // Service Episode ID
	0x00380061: "X", // Issuer of Service Episode ID
	0x00380062: "X", // Service Episode Description
	0x00380064: "X", // Issuer of Service Episode ID Sequence
	0x00380300: "X", // Current Patient Location
	0x00380400: "X", // Patient's Institution Residence
	0x00380500: "X", // Patient State
	0x00384000: "X", // Visit Comments
	// Procedure steps, requests, SR
	0x00400001: "X",   // Scheduled Station AE Title
	0x00400002: "X",   // Scheduled Procedure Step Start Date
	0x00400003: "X",   // Scheduled Procedure Step Start Time
	0x00400004: "X",   // Scheduled Procedure Step End Date
	0x00400005: "X",   // Scheduled Procedure Step End Time
	0x00400006: "X",   // Scheduled Performing Physician's Name
	0x00400007: "X",   // Scheduled Procedure Step Description
	0x00400009: "X",   // Scheduled Procedure Step ID
	0x0040000B: "X",   // Scheduled Performing Physician Identification Sequence
	0x00400010: "X",   // Scheduled Station Name
	0x00400011: "X",   // Scheduled Procedure Step Location
	0x00400012: "X",   // Pre-Medication
	0x00400241: "X",   // Performed Station AE Title
	0x00400242: "X",   // Performed Station Name
	0x00400243: "X",   // Performed Location
	0x00400244: "X",   // Performed Procedure Step Start Date
	0x00400245: "X",   // Performed Procedure Step Start Time
	0x00400250: "X",   // Performed Procedure Step End Date
	0x00400251: "X",   // Performed Procedure Step End Time
	0x00400253: "X",   // Performed Procedure Step ID
	0x00400254: "X",   // Performed Procedure Step Description
	0x00400275: "X",   // Request Attributes Sequence
	0x00400280: "X",   // Comments on the Performed Procedure Step
	0x00400310: "X",   // Comments on Radiation Dose
	0x0040050A: "X",   // Specimen Accession Number
	0x00400512: "D",   // Container Identifier
	0x00400513: "Z",   // Issuer of the Container Identifier Sequence
	0x00400551: "D",   // Specimen Identifier
	0x00400554: "U",   // Specimen UID
	0x00400555: "X",   // Acquisition Context Sequence
	0x00400562: "Z",   // Issuer of the Specimen Identifier Sequence
	0x00400600: "X",   // Specimen Short Description
	0x00400602: "X",   // Specimen Detailed Description
	0x00400610: "Z",   // Specimen Preparation Sequence
	0x004006FA: "X",   // Slide Identifier
	0x00401001: "X",   // Requested Procedure ID
	0x00401004: "X",   // Patient Transport Arrangements
	0x00401005: "X",   // Requested Procedure Location
	0x00401010: "X",   // Names of Intended Recipients of Results
	0x00401011: "X",   // Intended Recipients of Results Identification Sequence
	0x00401101: "D",   // Person Identification Code Sequence
	0x00401102: "X",   // Person's Address
	0x00401103: "X",   // Person's Telephone Numbers
	0x00401104: "X",   // Person's Telecom Information
	0x00401400: "X",   // Requested Procedure Comments
	0x00402001: "X",   // Reason for the Imaging Service Request
	0x00402008: "X",   // Order Entered By
	0x00402009: "X",   // Order Enterer's Location
	0x00402010: "X",   // Order Callback Phone Number
	0x00402011: "X",   // Order Callback Telecom Information
	0x00402016: "Z",   // Placer Order Number / Imaging Service Request
	0x00402017: "Z",   // Filler Order Number / Imaging Service Request
	0x00402400: "X",   // Imaging Service Request Comments
	0x00403001: "X",   // Confidentiality Constraint on Patient Data Description
	0x00404005: "X",   // Scheduled Procedure Step Start DateTime
	0x00404008: "X",   // Scheduled Procedure Step Expiration DateTime
	0x00404010: "X",   // Scheduled Procedure Step Modification DateTime
	0x00404011: "X",   // Expected Completion DateTime
	0x00404023: "U",   // Referenced General Purpose Scheduled Procedure Step Transaction UID
	0x00404025: "X",   // Scheduled Station Name Code Sequence
	0x00404027: "X",   // Scheduled Station Geographic Location Code Sequence
	0x00404028: "X",   // Performed Station Name Code Sequence
	0x00404030: "X",   // Performed Station Geographic Location Code Sequence
	0x00404034: "X",   // Scheduled Human Performers Sequence
	0x00404035: "X",   // Actual Human Performers Sequence
	0x00404036: "X",   // Human Performer's Organization
	0x00404037: "X",   // Human Performer's Name
	0x00404050: "X",   // Performed Procedure Step Start DateTime
	0x00404051: "X",   // Performed Procedure Step End DateTime
	0x00404052: "X",   // Procedure Step Cancellation DateTime
	0x0040A027: "X",   // Verifying Organization
	0x0040A030: "D",   // Verification DateTime
	0x0040A032: "X/D", // Observation DateTime
	0x0040A033: "X",   // Observation Start DateTime
	0x0040A073: "D",   // Verifying Observer Sequence
	0x0040A075: "D",   // Verifying Observer Name
	0x0040A078: "X",   // Author Observer Sequence
	0x0040A07A: "X",   // Participant Sequence
	0x0040A07C: "X",   // Custodial Organization Sequence
	0x0040A088: "Z",   // Verifying Observer Identification Code Sequence
	0x0040A123: "D",   // Person Name
	0x0040A124: "U",   // UID
	0x0040A13A: "D",   // Referenced DateTime
	0x0040A160: "X",   // Text Value
	0x0040A171: "U",   // Observation UID
	0x0040A192: "X",   // Observation Date (Trial)
	0x0040A193: "X",   // Observation Time (Trial)
	0x0040A307: "X",   // Current Observer (Trial)
	0x0040A352: "X",   // Verbal Source (Trial)
	0x0040A353: "X",   // Address (Trial)
	0x0040A354: "X",   // Telephone Number (Trial)
	0x0040A358: "X",   // Verbal Source Identifier Code Sequence (Trial)
	0x0040A730: "X",   // Content Sequence
	0x0040DB06: "X",   // Template Version
	0x0040DB07: "X",   // Template Local Version
	0x0040DB0B: "X",   // Template Extension Flag
	0x0040DB0C: "U",   // Template Extension Organization UID
	0x0040DB0D: "U",   // Template Extension Creator UID
	0x00500020: "X",   // Device Description
	0x00620021: "U",   // Tracking UID
	0x00640003: "U",   // Source Frame of Reference UID
	0x00700001: "D",   // Graphic Annotation Sequence
	0x00700082: "X/D", // Presentation Creation Date
	0x00700083: "X/D", // Presentation Creation Time
	0x00700084: "Z",   // Content Creator's Name
	0x00700086: "X",   // Content Creator's Identification Code Sequence
	0x0070031A: "U",   // Fiducial UID
	0x00880140: "U",   // Storage Media File-set UID
	0x00880200: "X",   // Icon Image Sequence
	0x00880904: "X",   // Topic Title
	0x00880906: "X",   // Topic Subject
	0x00880910: "X",   // Topic Author
	0x00880912: "X",   // Topic Keywords
	0x04000100: "X",   // Digital Signature UID
	0x04000105: "X",   // Digital Signature DateTime
	0x04000115: "X",   // Certificate of Signer
	0x04000310: "X",   // Certified Timestamp
	0x04000402: "X",   // Referenced Digital Signature Sequence
	0x04000403: "X",   // Referenced SOP Instance MAC Sequence
	0x04000404: "X",   // MAC
	0x04000550: "X",   // Modified Attributes Sequence
	0x04000561: "X",   // Original Attributes Sequence
	0x20300020: "X",   // Text String
	0x30060002: "D",   // Structure Set Label
	0x30060004: "X",   // Structure Set Name
	0x30060006: "X",   // Structure Set Description
	0x30060008: "X/D", // Structure Set Date
	0x30060009: "X/D", // Structure Set Time
	0x30060024: "U",   // Referenced Frame of Reference UID
	0x30060026: "X",   // ROI Name
	0x30060028: "X",   // ROI Description
	0x30060038: "X",   // ROI Generation Description
	0x30060085: "X",   // ROI Observation Label
	0x300600A6: "Z",   // ROI Interpreter
	0x300600C2: "U",   // Related Frame of Reference UID
	0x30080054: "X/D", // First Treatment Date
	0x30080056: "X/D", // Most Recent Treatment Date
	0x30080105: "Z",   // Source Serial Number
	0x30080250: "X/D", // Treatment Date
	0x30080251: "X/D", // Treatment Time
	0x300A0002: "D",   // RT Plan Label
	0x300A0003: "X",   // RT Plan Name
	0x300A0004: "X",   // RT Plan Description
	0x300A0006: "X/D", // RT Plan Date
	0x300A0007: "X/D", // RT Plan Time
	0x300A000E: "X",   // Prescription Description
	0x300A0013: "U",   // Dose Reference UID
	0x300A0016: "X",   // Dose Reference Description
	0x300A00C3: "X",   // Beam Description
	0x300A00DD: "X",   // Bolus Description
	0x300C0127: "D",   // Beam Hold Transition DateTime
	0x300E0004: "Z",   // Review Date
	0x300E0005: "Z",   // Review Time
	0x300E0008: "X/Z", // Reviewer Name
	0x40000010: "X",   // Arbitrary
	0x40004000: "X",   // Text Comments
	0x40080040: "X",   // Results ID
	0x40080042: "X",   // Results ID Issuer
	0x40080100: "X",   // Interpretation Recorded Date
	0x40080101: "X",   // Interpretation Recorded Time
	0x40080102: "X",   // Interpretation Recorder
	0x40080108: "X",   // Interpretation Transcription Date
	0x40080109: "X",   // Interpretation Transcription Time
	0x4008010A: "X",   // Interpretation Transcriber
	0x4008010B: "X",   // Interpretation Text
	0x4008010C: "X",   // Interpretation Author
	0x40080111: "X",   // Interpretation Approver Sequence
	0x40080112: "X",   // Interpretation Approval Date
	0x40080113: "X",   // Interpretation Approval Time
	0x40080114: "X",   // Physician Approving Interpretation
	0x40080115: "X",   // Interpretation Diagnosis Description
	0x40080118: "X",   // Results Distribution List Sequence
	0x40080119: "X",   // Distribution Name
	0x4008011A: "X",   // Distribution Address
	0x40080200: "X",   // Interpretation ID
	0x40080202: "X",   // Interpretation ID Issuer
	0x40080300: "X",   // Impressions
	0x40084000: "X",   // Results Comments
	0xFFFAFFFA: "X",   // Digital Signatures Sequence
	0xFFFCFFFC: "X",   // Data Set Trailing Padding
}

// patientCharacteristics are kept with the Retain Patient Characteristics
// option (PS3.15 E.3.7).
var patientCharacteristics = map[uint32]bool{
	0x00100040: true, // Patient's Sex
	0x00101010: true, // Patient's Age
	0x00101020: true, // Patient's Size
	0x00101030: true, // Patient's Weight
	0x00102160: true, // Ethnic Group
	0x001021A0: true, // Smoking Status
	0x001021C0: true, // Pregnancy Status
	0x00102203: true, // Patient's Sex Neutered
	0x00102000: true, // Medical Alerts
	0x00102110: true, // Allergies
	0x00380050: true, // Special Needs
	0x00380500: true, // Patient State
}

// notTimeline are DA/DT attributes that date a definition, not an event of
// the patient's care: code sets and templates, protocols, hanging
// protocols, implant templates, products and equipment. The Retain
// Longitudinal Temporal Information with Modified Dates option shifts the
// patient's timeline; these are never shifted (PS3.15 E.3.6 modifies the
// dates of Table E.1-1's attributes; Table E.1-1 decides for those of these
// it lists, e.g. Template Version: X, and the others are kept).
var notTimeline = map[uint32]bool{
	0x00080106: true, // Context Group Version
	0x00080107: true, // Context Group Local Version
	0x0040DB06: true, // Template Version
	0x0040DB07: true, // Template Local Version
	0x00120086: true, // Ethics Committee Approval Effectiveness Start Date
	0x00120087: true, // Ethics Committee Approval Effectiveness End Date
	0x00141020: true, // Expiry Date (NDE consumable)
	0x00144076: true, // Procedure Creation Date (NDE procedure definition)
	0x00144078: true, // Procedure Expiration Date
	0x0014407A: true, // Procedure Last Modified Date
	0x00181204: true, // Date of Manufacture (equipment)
	0x00181205: true, // Date of Installation (equipment)
	0x00440004: true, // Approval Status DateTime (product)
	0x0044000B: true, // Product Expiration DateTime
	0x00686226: true, // Effective DateTime (implant template)
	0x00686270: true, // Information Issue DateTime (implant template)
	0x0072000A: true, // Hanging Protocol Creation DateTime
	0x00720061: true, // Selector DA Value (hanging protocol)
	0x00720063: true, // Selector DT Value (hanging protocol)
}

// keepUIDTags name SOP classes, transfer syntaxes or coding schemes, not
// instances: they are never remapped.
var keepUIDTags = map[uint32]bool{
	0x00020002: true, // Media Storage SOP Class UID
	0x00020010: true, // Transfer Syntax UID
	0x00041510: true, // Referenced SOP Class UID in File
	0x00041512: true, // Referenced Transfer Syntax UID in File
	0x00080016: true, // SOP Class UID
	0x0008001A: true, // Related General SOP Class UID
	0x0008001B: true, // Original Specialized SOP Class UID
	0x0008010C: true, // Coding Scheme UID
	0x00080118: true, // Mapping Resource UID
	0x00081150: true, // Referenced SOP Class UID
}

// maskedAction returns the action for repeating-group attributes: overlay
// data and comments (60xx,3000/4000) and curves (50xx).
func maskedAction(t uint32) (string, bool) {
	g, e := uint16(t>>16), uint16(t)
	if g&0xFF00 == 0x5000 && g%2 == 0 {
		return "X", true // curve data
	}
	if g&0xFF00 == 0x6000 && g%2 == 0 && (e == 0x3000 || e == 0x4000) {
		return "X", true // overlay data, overlay comments
	}
	return "", false
}
