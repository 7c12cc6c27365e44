/** What an sftp:// URL names: the remote path, the endpoint a connection serves, the host for messages. */

/** sftp://host/data/x → /data/x; sftp://host/~/x → x, relative to the login's home. */
export function remotePath(url: URL): string {
  const path = decodeURIComponent(url.pathname);
  if (path.startsWith('/~/')) return path.slice(3);
  return path;
}

/** user@host:port: connections are pooled and reused per endpoint. */
export function endpointKey(url: URL): string {
  return `${url.username}@${url.hostname}:${url.port || 22}`;
}

/** host, or host:port off the default port, for messages. */
export function hostLabel(url: URL): string {
  return url.port ? `${url.hostname}:${url.port}` : url.hostname;
}
