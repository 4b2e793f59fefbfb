// Command ferry mirrors a local directory to targets: local disks now, SFTP
// and S3 servers as their backends land. `ferry sync SOURCE TARGET` runs one
// sync; `ferry version` says which build this is.
//
// Exit status: 0 when everything was synced; 1 when some files failed (the
// rest were synced), deletes were refused for safety, or the run was
// interrupted; 2 for usage and configuration errors (bad flags or sizes, a
// missing source root, a target inside the source); 3 when a target could
// not be reached or refused our credentials. Paths skipped on purpose
// (sockets and fifos in the source, symlinks a target cannot hold) and
// source files deleted while the run copied them are warnings, not
// failures: the target ends as the source now is.
package main
