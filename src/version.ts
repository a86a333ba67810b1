// The package version, shown in admin/version and by the tools' --version.
export const VERSION = '0.1.0'
