package linuxtest

import "github.com/google/nftables"

// DeleteNFTable removes the nftables table name in the ip and inet
// families, if it exists, through netlink (no nft binary needed). Tests call
// it in cleanup: the agent keeps its table across restarts by design.
func DeleteNFTable(name string) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	tables, err := c.ListTables()
	if err != nil {
		return err
	}
	for _, t := range tables {
		if t.Name == name && (t.Family == nftables.TableFamilyIPv4 || t.Family == nftables.TableFamilyINet) {
			c.DelTable(t)
		}
	}
	return c.Flush()
}
