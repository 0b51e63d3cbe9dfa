@testable import ClusterConfig

/// The error `parse` throws for `text`, or nil when it parses.
func configError(_ text: String, file: String = "cluster.conf") -> ConfigError? {
    do {
        _ = try ClusterConfig.parse(text, file: file)
        return nil
    } catch let error as ConfigError {
        return error
    } catch {
        return ConfigError(file: "?", line: -1, message: "unexpected error type: \(error)")
    }
}

/// A valid one-node body to which a test appends the section under test.
let oneNode = """
    [node a1]
    listen = 127.0.0.1:6001

    """
