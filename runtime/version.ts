/** capsule's version (semver). */
export const VERSION = "0.1.0";

/** The runtime spec version capsule implements and writes. */
export const OCI_VERSION = "1.2.0";
